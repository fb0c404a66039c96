"""Finite-width fluctuations of deep nonlinear nets: the action's Hessian from site averages
(THEORY.md §3; symdmft.deep.site_jets, site_action, propagator).

References, each independent of the code path it checks:

* Linear sites: the dense deep-linear propagator (``deep.linear_propagator``: closed-form
  matrix equations, an analytic Jacobian and Isserlis), itself checked against O6/O7 and
  trained networks. With an exact Gauss-Hermite rule the two must agree to rounding.
* L = 1, tanh: the two-layer propagator of ``sd.solve`` (generated Numba site kernels).
* One layer's Hessian against finite differences of ln Z itself (tests/oracles/
  deep_site_action.py: sites solved by Newton away from causality, |det J| evaluated).
* Trained tanh networks at two widths (THEORY.md §5).
"""
import numpy as np
import pytest

import symdmft as sd
from symdmft.deep.linear_propagator import solve_linear_propagator
from symdmft.deep.linear_rich import solve_linear_rich
from symdmft.deep.propagator import solve_deep_propagator
from symdmft.deep.rich import solve_rich_sampled
from symdmft.deep.site_jets import site_jets
from symdmft.runtime.samplers import tensor_gauss_hermite

ONE_INPUT = sd.Data(np.ones((1, 4)), np.array([1.0]))


def _exact_rule(l, dim):
    """Three Gauss-Hermite nodes per axis integrate polynomials of degree 5 exactly: linear
    sites need moments of the sources up to order 4."""
    return tensor_gauss_hermite(dim, 3)


@pytest.mark.parametrize("L, P, steps, center, test_point", [(2, 1, 2, False, True), (3, 1, 2, False, False),
                                                            (2, 1, 3, True, False), (2, 2, 1, True, True)])
def test_linear_sites_reproduce_the_dense_linear_propagator(L, P, steps, center, test_point):
    """A linear activation through the general site-average Hessian equals the closed-form deep
    linear propagator (response fluctuations, ln det term, centring, test points) to rounding
    (measured <= 4e-15 relative); the tolerance 1e-10 leaves room for BLAS differences only."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((P + 1, 3))
    data = sd.Data(X[:P], np.array([1.0, -0.5])[:P], X_test=X[P:] if test_point else None)
    net, grid = sd.mlp(L, "linear", 1.2, center=center), sd.TimeGrid(0.3, steps)
    ref = solve_linear_propagator(net, data, grid)
    res = solve_deep_propagator(net, data, grid, solve_linear_rich(net, data, grid), rule=_exact_rule)
    scale = np.max(np.abs(ref.f_cov))
    assert np.max(np.abs(res.f_cov - ref.f_cov)) <= 1e-10 * scale
    for k, v in ref.kernels_var.items():
        assert np.max(np.abs(res.kernels_var[k] - v)) <= 1e-10 * np.max(np.abs(v)), k


def test_two_layer_tanh_matches_sd_solve():
    """L = 1: the general machinery against the generated two-layer propagator of sd.solve. Both
    carry quadrature error: sd.solve 40 000 Gauss-Hermite sites (~1e-5), here 8192 Sobol sites
    (measured 1.5e-3 relative on N Cov f, 1e-3 on N Var K at the last step); tolerance 1%."""
    P = 1
    X = np.random.default_rng(0).standard_normal((P, 3))
    data = sd.Data(X, np.array([1.0]))
    net, grid = sd.mlp(1, "tanh", 1.0), sd.TimeGrid(0.3, 6)
    ref = sd.solve(net, data, grid, samples=40_000)
    saddle = solve_rich_sampled(net, data, grid, samples=2**14)
    res = solve_deep_propagator(net, data, grid, saddle, samples=2**13)
    assert np.max(np.abs(res.f_cov - ref.f_cov)) <= 0.01 * np.max(np.abs(ref.f_cov))
    assert np.max(np.abs(res.ntk_var - ref.ntk_var)) <= 0.01 * np.max(np.abs(ref.ntk_var))


def test_site_jets_match_central_differences():
    """Source derivatives of phi(h_j), g_j and z_j (to third order for phi and g) against central
    differences of the next lower order (step 1e-5: truncation ~1e-10, rounding ~1e-11;
    measured <= 5e-10); tolerance 1e-7."""
    rng = np.random.default_rng(1)
    T1, Pa = 3, 2
    n = T1 * Pa
    tt = np.repeat(np.arange(T1), Pa)
    C = 0.4 * rng.standard_normal((n, n)) * (tt[:, None] > tt[None, :])
    E = 0.4 * rng.standard_normal((n, n)) * (tt[:, None] >= tt[None, :])
    phis = sd.mlp(2, "tanh", 1.0).numpy_derivatives(4)
    u, r = rng.standard_normal((3, n)), rng.standard_normal((3, n))
    jets = site_jets(u, r, C, E, 0.8, Pa, phis, third=("u", "r"))
    eps, worst = 1e-5, 0.0
    for a in range(2 * n):
        d = np.zeros(2 * n)
        d[a] = eps
        up = site_jets(u + d[:n], r + d[n:], C, E, 0.8, Pa, phis)
        dn = site_jets(u - d[:n], r - d[n:], C, E, 0.8, Pa, phis)
        for name in ("phi", "g", "zj"):
            J, Jp, Jm = getattr(jets, name), getattr(up, name), getattr(dn, name)
            for k in range(2):
                worst = max(worst, np.max(np.abs((Jp[k] - Jm[k]) / (2 * eps) - J[k + 1][..., a])))
            if name != "zj":
                fd = (Jp[2] - Jm[2]) / (2 * eps)
                for kind, K in (("u", slice(0, n)), ("r", slice(n, 2 * n))):
                    third = jets.third[kind][0 if name == "phi" else 1][..., a]
                    worst = max(worst, np.max(np.abs(fd[:, :, K, K] - third)))
    assert worst <= 1e-7
