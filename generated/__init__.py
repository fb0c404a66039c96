"""Solver modules emitted by ``symdmft generate`` for the built-in activations.

Every file here is written by the generator (symdmft.codegen.module.emit); a test
regenerates them and fails when a committed file is stale.
"""
