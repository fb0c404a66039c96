"""The O(1/N) mean correction of deep linear nets (THEORY.md §3; symdmft.deep.linear_bias).

References, each independent of the code path it checks:

* One hidden layer: the two-layer mean correction of ``sd.solve(bias=True)`` (generated
  second-order site tangents, exact with its Gauss-Hermite rule), a different derivation.
* t = 0: for linear nets with Gaussian weights E f(0) = 0 and E Phi^l(0), E G^l(0), E K(0)
  equal their infinite-width values at every width, so every correction vanishes there.
* Trained deep linear networks at two widths (THEORY.md §5): the response functions enter
  only from L = 2 on, and there only the ensembles can check them.
"""
import numpy as np
import pytest

import symdmft as sd
from symdmft.deep.linear_bias import linear_mean_correction
from symdmft.deep.linear_rich import solve_linear_rich

D0 = sd.default_data()
ONE = sd.Data(np.ones((1, 4)), np.array([1.0]))


@pytest.mark.parametrize("center", [False, True])
def test_one_hidden_layer_equals_the_two_layer_bias(center):
    """L = 1 (no responses), one training and one test point, 4 steps: the same numbers as the
    two-layer solver's mean correction (its Gauss-Hermite rule is exact for a linear site), to
    the central differences' error (measured 3e-11 of the scale; bound 1e-8)."""
    data = sd.Data(D0.X[:1], D0.y[:1], X_test=D0.X_test)
    net, grid = sd.mlp(1, "linear", 1.3, center=center), sd.TimeGrid(0.2, 4)
    (f_bias, kernels), _, _ = linear_mean_correction(net, data, grid)
    two = sd.solve(net, data, grid, bias=True)
    assert two.params["sampler"] == "gauss-hermite"
    scale = np.abs(two.f_bias).max()
    np.testing.assert_allclose(f_bias, two.f_bias, rtol=0, atol=1e-8 * scale)
    for name, b in two.kernels_bias.items():
        np.testing.assert_allclose(kernels[name], b, rtol=0, atol=1e-8 * np.abs(b).max())


@pytest.mark.parametrize("L, center", [(2, True), (3, False)])
def test_operator_divergence_equals_the_dense_one(L, center):
    """The divergence by products with the matrix-free Hessian operator equals the one from
    dense theory-form blocks rebuilt at every shifted point (the same differences of the same
    Hessian; measured 1.2e-10 of the scale, bound 1e-8: the differences' rounding, ~1e-16 /
    eps, amplified by the sums). Two points and a test point, centred and not."""
    from symdmft.deep.linear_bias import _divergence, _divergence_dense, theory_blocks
    from symdmft.deep.linear_tangents import _Layout
    data = sd.Data(D0.X[:2], D0.y[:2], X_test=D0.X_test)
    net, grid = sd.mlp(L, "linear", 1.1, center=center), sd.TimeGrid(0.2, 1)
    res = solve_linear_rich(net, data, grid)
    lay = _Layout(L, 2 * 3)
    tf = theory_blocks(res, lay, net.gamma0, grid.eta, 2, 3, center)
    R = np.linalg.inv(tf["I_minus_D"])
    Sigma = R @ tf["kappa"] @ R.T
    got = _divergence(res, lay, net, 2, grid.eta, tf, Sigma, R, 1e-5, True)
    ref = _divergence_dense(res, lay, net, 2, grid.eta, tf, Sigma, R, 1e-5, True)
    assert np.abs(ref).max() > 1e-2
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8 * np.abs(ref).max())


def test_corrections_vanish_at_initialisation_and_do_not_depend_on_the_step():
    """L = 2, two training points, 2 steps: every correction is zero at t = 0 (to the
    differences' error, 1e-9) and nonzero later; steps eps = 1e-5 and 1e-4 agree to 1e-6 of
    the scale (truncation ~eps^2, rounding ~1e-16 / eps)."""
    data = sd.Data(D0.X[:2], D0.y[:2])
    net, grid = sd.mlp(2, "linear", 1.2), sd.TimeGrid(0.15, 2)
    (f_bias, kernels), _, _ = linear_mean_correction(net, data, grid)
    (f_coarse, kernels_coarse), _, _ = linear_mean_correction(net, data, grid, eps=1e-4)
    for b, c in [(f_bias, f_coarse)] + [(kernels[k], kernels_coarse[k]) for k in kernels]:
        scale = np.abs(b).max()
        assert scale > 1e-2 and np.abs(b[0]).max() < 1e-9 * max(1.0, scale)
        np.testing.assert_allclose(b, c, rtol=0, atol=1e-6 * scale)


def test_sd_solve_adds_the_correction_and_refuses_what_it_cannot():
    """sd.solve(bias=True) on a small deep linear problem fills f_bias, kernels_bias (ntk_bias)
    and the saved dataset; a deep linear problem above DENSE_N is refused by name before any
    work (deep tanh nets: tests/test_deep_nonlinear_bias.py)."""
    from symdmft.deep.linear_bias import DENSE_N
    res = sd.solve(sd.mlp(2, "linear", 1.0), ONE, sd.TimeGrid(0.1, 3), bias=True)
    assert res.f_bias.shape == (4, 1) and res.ntk_bias.shape == (4, 1, 1)
    assert "ntk_bias" in res.to_xarray() and "Phi2_bias" in res.to_xarray()
    with pytest.raises(AttributeError, match="bias=True"):
        sd.solve(sd.mlp(2, "linear", 1.0), ONE, sd.TimeGrid(0.1, 3)).ntk_bias
    with pytest.raises(NotImplementedError, match=f"bias=True.*<= {DENSE_N}"):
        sd.solve(sd.mlp(2, "linear", 1.0), ONE, sd.TimeGrid(0.1, DENSE_N), bias=True)


def _corrected_means(series, exact0):
    """Ensemble means of each (E, steps+1) series with the t = 0 value as a control variate
    (its mean is known exactly at any width, see the module docstring), and their errors."""
    x0 = series[:, 0] - exact0
    beta = np.array([np.cov(series[:, t], x0)[0, 1] / max(np.var(x0, ddof=1), 1e-300)
                     for t in range(series.shape[1])])
    resid = series - beta[None, :] * x0[:, None]
    return resid.mean(0), resid.std(0, ddof=1) / np.sqrt(series.shape[0])


@pytest.fixture(scope="module", params=[(2, 1.0, 6), (3, 1.5, 4)], ids=["L2-gamma1", "L3-gamma1.5"])
def two_widths(request):
    """(L, gamma0, steps) = (2, 1, 6) and (3, 1.5, 4), one input, eta = 0.1: theory (with and
    without the noise term) and the ensemble means of f and every kernel, E = 8000 at N = 128
    and 256."""
    L, g0, steps = request.param
    net, grid = sd.mlp(L, "linear", g0), sd.TimeGrid(0.1, steps)
    (f_bias, kernels), _, _ = linear_mean_correction(net, ONE, grid)
    (f_abl, kernels_abl), _, _ = linear_mean_correction(net, ONE, grid, noise_term=False)
    inf = solve_linear_rich(net, ONE, grid)
    theory = {"f": f_bias[:, 0], **{k: v[:, 0, 0] for k, v in kernels.items()}}
    ablation = {"f": f_abl[:, 0], **{k: v[:, 0, 0] for k, v in kernels_abl.items()}}
    limit = {"f": inf.f[:, 0], **{k: v[:, 0, 0] for k, v in inf.kernels.items()}}
    means = {}
    for N in (128, 256):
        s = sd.simulate(net, ONE, grid, N, 8000, seed=21)
        series = {"f": s.f[:, :, 0], **{k: v[:, :, 0, 0] for k, v in s.kernels.items()}}
        means[N] = {k: _corrected_means(v, limit[k][0]) for k, v in series.items()}
    return theory, ablation, limit, means


def _coefficients(two_widths, name):
    """c_N = N (m_N - o_inf) at N = 128, 256 (the limit is known exactly here) and their
    standard errors."""
    _, _, limit, means = two_widths
    (m1, s1), (m2, s2) = means[128][name], means[256][name]
    return 128 * (m1 - limit[name]), 128 * s1, 256 * (m2 - limit[name]), 256 * s2


@pytest.mark.slow
def test_corrections_agree_with_trained_networks(two_widths):
    """N (E o - o_inf) for f and every kernel at every step, c_N = N (m_N - o_inf): the
    extrapolation 2 c_256 - c_128 (its O(1/N) remainder cancels) within 4 of its standard
    errors plus 5% of the largest |c| (O(1/N^2)); c_256 within 4 se + 10% and c_128 within
    4 se + 20% (their remainders d / N). Measured, L = 2 / L = 3: at most 0.24 / 0.23 of these
    bands (the extrapolation), 0.15 / 0.26 (N = 256), 0.22 / 0.25 (N = 128); |c| up to 5.3 /
    33 (the NTK)."""
    theory = two_widths[0]
    for name, th in theory.items():
        c1, se1, c2, se2 = _coefficients(two_widths, name)
        scale = np.abs(th).max()
        extrap, se_extrap = 2 * c2 - c1, np.sqrt(4 * se2**2 + se1**2)
        assert np.all(np.abs(extrap - th) <= 4 * se_extrap + 0.05 * scale), (name, extrap, th)
        assert np.all(np.abs(c2 - th) <= 4 * se2 + 0.10 * scale), (name, c2, th)
        assert np.all(np.abs(c1 - th) <= 4 * se1 + 0.20 * scale), (name, c1, th)


@pytest.mark.slow
def test_without_the_noise_term_it_fails(two_widths):
    """Dropping d kappa' / dq' (the noise's dependence on the order parameters) keeps only the
    curvature 1/2 F''[Sigma]: a third of f's correction and a fifth of the NTK's at L = 2.
    Against the N = 256 ensembles f and the NTK fall outside the full theory's band
    (4 se + 10%) by more than twice that band (measured L = 2: 2.3, 3.0; L = 3: 2.7, 2.5
    bands; the layer kernels 0.8-4.2, not asserted)."""
    theory, ablation = two_widths[0], two_widths[1]
    for name in ("f", "K"):
        _, _, c2, se2 = _coefficients(two_widths, name)
        band = 4 * se2 + 0.10 * np.abs(theory[name]).max()
        assert np.max(np.abs(c2 - ablation[name]) / band) > 2.0, name
