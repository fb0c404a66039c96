"""Online learning of two-layer networks: population GD on a Gaussian input law (issue 6).

``Population.gaussian(D, Teacher(...))`` (or ``Population.points(data)``), then
``solve_online(net, population, grid)`` -> ``OnlineResult`` with the infinite-width loss curve,
N Var of outputs and loss, and the O(1/N) mean corrections. The model and its equations:
docs/online_learning.md. Ground truth: ``symdmft.simulate.simulate_online``.
"""
from .population import Population, Teacher
from .result import OnlineResult
from .solve import solve_online

__all__ = ["Population", "Teacher", "OnlineResult", "solve_online"]
