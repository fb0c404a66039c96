"""Expansion of the action: saddle equations, second variation, Gaussian rules."""
from .derive import Derivation, derive

__all__ = ["Derivation", "derive"]
