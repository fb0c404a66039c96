"""Finite-width network ensembles: the ground truth (THEORY.md §1, §5)."""
from .ensemble import simulate
from .result import SimResult

__all__ = ["simulate", "SimResult"]
