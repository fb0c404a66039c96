"""Runtime: quadrature of the sources, saddle and propagator solves."""
from .samplers import make_rule
from .solve import solve

__all__ = ["make_rule", "solve"]
