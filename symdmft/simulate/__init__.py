"""Finite-width network ensembles: the ground truth (THEORY.md §1, §5)."""
from .ensemble import simulate
from .online import OnlineSimResult, simulate_online
from .result import SimResult

__all__ = ["simulate", "SimResult", "simulate_online", "OnlineSimResult"]
