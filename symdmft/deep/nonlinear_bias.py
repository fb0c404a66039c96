"""The O(1/N) mean correction of deep nonlinear nets: dense, small problems (THEORY.md §3,
"Mean (bias) correction").

The formula of ``deep.linear_bias`` holds for any smooth activation,

    N (E q' - q'_inf) = R div,   div = sum_k d/dq'_k of column k of 1/2 D'(q') Sigma + kappa'(q') R^T,

because its two premises do: the deep action has THEORY.md §3's form in q' and w' for tanh
too (``tests/test_deep_propagator.py::test_nonlinear_hessian_has_the_theory_form``), and each
layer's ln Z and its causal derivatives vanish at every causal point, not only at the saddle,
so the site-average blocks (``deep.site_action``) rebuilt at q'* +- eps e_k are the Hessian
there. ``deep.mean_shift`` takes the differences.

Differences of sampled averages are only as good as their smoothness in q'. Every shifted
point therefore uses the same Sobol points per layer (common random numbers) and a source
root that is a smooth function of the source covariance without reordering
(``site_action.cholesky_root``, ``sort=False``; the default eigenvector root, sorted by
variance, can rotate or swap columns between nearby covariances); a shift that changed a
covariance's rank would change the rule's dimension and is refused. A root amplifies the
sampling error like 1/sqrt(pivot), and the pivots fall like (eta gamma0)^(2k) over k steps:
covariances with a pivot below PIVOT_MIN are refused before the differences
(``check_conditioning``; docs/deep_fluctuations.md has the measurements and what was
tried). The differences then carry truncation ~eps^2 and rounding ~1e-16 / eps; the Sobol
error of the averages remains (module constants). A shift of one
coordinate changes the inputs of one or two layers (f: all, through the training signal);
the others are reused. Cost: 2 |q'| layer Hessians, |q'| ~ (4L - 1) n^2.
"""
from __future__ import annotations

import numpy as np

from .linear_action import theory_form
from .linear_tangents import _Layout, saddle_geometry
from .mean_shift import dense_divergence, shift_observables
from .propagator import action_hessian, check_inputs
from .site_action import cholesky_root

# Central-difference step on the order parameters (entries O(1); the source covariances'
# Cholesky pivots are kept >= PIVOT_MIN = 100 eps of their scale, so the step stays inside).
EPS = 1e-6
# The smallest Cholesky pivot (relative to the covariance's scale) of a source covariance
# that is an order parameter: below it the differences through the root are refused. The
# pivots fall like (eta gamma0)^(2k) over k steps; a root amplifies the sampling error like
# 1/sqrt(pivot). Checked against trained nets at 4.3e-4 (tests/test_deep_nonlinear_bias.py);
# tanh L = 2, eta = 0.1, 3 steps has 8e-6, where a shift of eps dropped a direction.
PIVOT_MIN = 1e-4
# sd.solve(bias=True) for deep nonlinear nets while (steps+1) P_all is at most this, with
# BIAS_SITES Sobol sites per layer (tanh L = 2, n = 4: 13 s; the corrections differ from
# those at 16384 sites by <= 3e-3 on a scale of 0.16, and at t = 0 from the exact values by
# <= 1e-3 on a scale of 0.05: tests/test_deep_nonlinear_bias.py).
BIAS_N = 6
BIAS_SITES = 4096


def nonlinear_mean_correction(net, data, grid, saddle, samples: int = BIAS_SITES, seed: int = 0,
                              eps: float = EPS, noise_term: bool = True, rule=None):
    """N (E f - f_inf) (steps+1, P_all) and N (E K - K_inf) of the equal-time kernels and the
    NTK (dict, (steps+1, P, P)) of a deep nonlinear net from its sampled saddle (a RichResult,
    ``deep.rich.solve_rich_sampled``; its own sampling error enters as an error in q'_inf);
    with the propagator Sigma over q' and q' (module docstring). ``samples`` Sobol sites per
    layer, ``seed`` their scrambling; ``rule(l, dim)`` overrides them (e.g. a tensor
    Gauss-Hermite rule where the sources have few dimensions). ``noise_term=False`` drops the
    kappa' derivative (the ablation keeping the curvature 1/2 F''[Sigma] only)."""
    check_inputs(net, data, grid, saddle, samples, seed, "qmc")
    from ..runtime.samplers import make_rule
    g0, T1, Pa = net.gamma0, grid.steps + 1, data.P_all
    lay = _Layout(saddle.L, T1 * Pa)
    check_conditioning(saddle, grid.eta, data.P)
    dims = {}

    def rule_for(l, dim):
        if dims.setdefault(l, dim) != dim:
            raise FloatingPointError(
                f"the source covariance of layer {l} changed rank (from {dims[l]} to {dim} directions) "
                f"under a shift of eps = {eps:g}: the mean correction's differences need a smooth "
                f"root; try a smaller eps")
        return rule(l, dim) if rule is not None else make_rule(dim, samples, seed + 7919 * l, "qmc")

    options = {"root": cholesky_root, "sort": False}
    base = {}

    def blocks_at(point, cache=None):
        H, _ = action_hessian(net, point, grid, data.P, rule_for, layer_options=options,
                              cache=dict(base) if cache is None else cache)
        return theory_form(lay, H, g0, T1, Pa)

    tf = blocks_at(saddle, cache=base)                       # fills ``base``: the saddle's layers
    R = np.linalg.solve(tf["I_minus_D"], np.eye(tf["q"].size))
    Sigma = R @ tf["kappa"] @ R.T
    div = dense_divergence(blocks_at, saddle, lay, tf, Sigma, R, eps, noise_term)
    shift = np.zeros(lay.size)
    shift[tf["q"]] = R @ div
    return shift_observables(saddle, lay, shift, Sigma, tf["q"]), Sigma, tf["q"]


def check_conditioning(saddle, eta: float, P: int) -> None:
    """NotImplementedError, before the differences, where a source covariance that is an order
    parameter (Phi^{l-1} of layer l >= 2, G^{l+1} of layer l < L) has a kept Cholesky pivot
    below PIVOT_MIN of its scale."""
    Phi, G = saddle_geometry(saddle, eta, P)[:2]
    L = saddle.L
    for l in range(1, L + 1):
        for name, M, used in ((f"Phi^{l - 1}", Phi[l - 1], l > 1), (f"G^{l + 1}", G[l], l < L)):
            if not used:
                continue
            U = cholesky_root(M)
            pivot = float(np.min(U[np.argmax(U != 0.0, axis=0), np.arange(U.shape[1])] ** 2))
            pivot /= max(1.0, float(np.max(np.abs(M))))
            if pivot < PIVOT_MIN:
                raise NotImplementedError(
                    f"bias=True: the source covariance {name} of layer {l} is nearly singular (smallest "
                    f"Cholesky pivot {pivot:.1e} of its scale, below {PIVOT_MIN:g}); the mean correction "
                    f"differentiates site averages through its root, which amplifies their sampling "
                    f"error like 1/sqrt(pivot). The pivots fall like (eta gamma0)^(2k) over k steps: "
                    f"fewer steps or larger eta gamma0 keep them up (deep.nonlinear_bias)")
