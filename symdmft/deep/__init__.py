"""Deep MLPs at initialisation and in the lazy limit (THEORY.md §3 "Lazy limit", O5, O6, O9).

``initial_statistics(net, data)``: mean kernels Phi^l, G^l, K at t = 0 for any depth and
activation, and their N Cov with the noise of every layer carried forward and backward.
``lazy_solve(net, data, grid)``: the lazy-limit (gamma0 -> 0, centred) prediction
covariance on train and test points, discrete gradient descent or gradient flow.
"""
from .lazy import lazy_solve
from .result import InitStats
from .statistics import initial_statistics

__all__ = ["InitStats", "initial_statistics", "lazy_solve"]
