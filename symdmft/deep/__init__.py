"""Deep MLPs (THEORY.md §2-3): at initialisation, in the lazy limit, and in the rich regime.

``initial_statistics(net, data)``: mean kernels Phi^l, G^l, K at t = 0 for any depth and
activation, and their N Cov with the noise of every layer carried forward and backward.
``lazy_solve(net, data, grid)``: the lazy-limit (gamma0 -> 0, centred) prediction
covariance on train and test points, discrete gradient descent or gradient flow.
``solve_rich`` (what ``sd.solve`` calls for hidden_layers >= 2): the infinite-width
rich-regime site process with responses A, B by sampling; deep linear nets by the closed form
(``solve_linear_rich``) with the matrix-free propagator, response fluctuations included
(``solve_linear_matrix_free``; the dense reference: ``solve_linear_propagator``). ``solve_deep_propagator(net, data, grid, saddle)``:
the finite-width propagator of any smooth deep net from its action's Hessian as site averages
(what ``sd.solve`` adds while (steps+1) P_all <= 12; docs/deep_fluctuations.md);
``solve_nonlinear_matrix_free(net, data, grid, saddle, f_steps=, kernel_steps=)`` the same
numbers for chosen observables without the Hessian, for problems beyond its reach.
``linear_mean_correction(net, data, grid)``: the O(1/N) mean correction of deep linear nets,
``nonlinear_mean_correction(net, data, grid, saddle)`` that of smooth deep nets on small
problems (what ``sd.solve(..., bias=True)`` adds). Results: ``RichResult``.
"""
from .lazy import lazy_solve
from .linear_bias import linear_mean_correction
from .linear_matrix_free import solve_linear_matrix_free
from .linear_propagator import solve_linear_propagator
from .linear_rich import solve_linear_rich
from .nonlinear_matrix_free import solve_nonlinear_matrix_free
from .nonlinear_bias import nonlinear_mean_correction
from .propagator import solve_deep_propagator
from .result import InitStats
from .rich import solve_rich
from .rich_result import RichResult
from .statistics import initial_statistics

__all__ = ["InitStats", "initial_statistics", "lazy_solve", "solve_rich", "solve_linear_rich",
           "solve_linear_propagator", "solve_linear_matrix_free", "solve_deep_propagator",
           "solve_nonlinear_matrix_free",
           "linear_mean_correction", "nonlinear_mean_correction", "RichResult"]
