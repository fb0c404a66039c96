"""Finite-width fluctuations of deep linear nets: the dense propagator (THEORY.md §3, O6, §5).

References, each independent of the code path it checks:

* O6 (one input, x.x/D = 1, t = 0): N Var Phi^l = 2l, N Var G^l = 2(L-l+1),
  N Var K = (2/3) L (L+1) (2L+1), and O7 N Var f(0) = Phi^L / gamma0^2.
* L = 1: the two-layer propagator of ``sd.solve`` (generated site kernels, exact
  Gauss-Hermite quadrature for the polynomial site), an entirely separate code path.
* The analytic Jacobian D against central differences of the saddle map written out below.
* Trained networks at two widths (THEORY.md §5), and the ablation without response noise.
"""
import numpy as np
import pytest

import symdmft as sd
from symdmft.deep.linear_propagator import _Layout, saddle_jacobian, solve_linear_propagator
from symdmft.deep.linear_rich import solve_linear_rich

ONE_INPUT = sd.Data(np.ones((1, 4)), np.array([1.0]))


@pytest.mark.parametrize("L", [2, 3])
def test_o6_o7_at_initialisation(L):
    """t = 0 variances are O6/O7 exactly (1e-10: a few dense solves of size ~10^3)."""
    g0 = 1.3
    r = solve_linear_propagator(sd.mlp(L, "linear", g0), ONE_INPUT, sd.TimeGrid(0.1, 3))
    for l in range(1, L + 1):
        assert r.kernels_var[f"Phi{l}"][0, 0, 0] == pytest.approx(2 * l, rel=1e-10)
        assert r.kernels_var[f"G{l}"][0, 0, 0] == pytest.approx(2 * (L - l + 1), rel=1e-10)
    assert r.kernels_var["K"][0, 0, 0] == pytest.approx(2 / 3 * L * (L + 1) * (2 * L + 1), rel=1e-10)
    assert r.f_var[0, 0] == pytest.approx(1 / g0**2, rel=1e-10)


def test_two_layer_matches_sd_solve():
    """L = 1, two training points and a test point: N Cov f and N Var K equal ``sd.solve``'s
    (Gauss-Hermite, exact for a linear site) to 1e-9 relative (measured 1e-13)."""
    d = sd.default_data()
    data = sd.Data(d.X[:2], d.y[:2], X_test=d.X_test)
    net, grid = sd.mlp(1, "linear", 1.3), sd.TimeGrid(0.15, 8)
    ref = sd.solve(net, data, grid, sampler="gauss-hermite")
    r = solve_linear_propagator(net, data, grid)
    np.testing.assert_allclose(r.f, ref.f, rtol=0, atol=1e-10)
    scale = np.abs(ref.f_cov).max()
    np.testing.assert_allclose(r.f_cov, ref.f_cov.reshape(r.f_cov.shape), rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(r.kernels_var["K"], ref.ntk_var, rtol=1e-9)


def _saddle_map(q, lay, L, g0, eta, Kx, y, P, Pa):
    """q -> <psi>_q written out with dense inverses (THEORY.md §2), for any q (any support)."""
    n, T1 = lay.n, lay.n // Pa
    v = lay.unpack(q)
    lower = np.kron(np.tril(np.ones((T1, T1)), -1), np.ones((Pa, Pa)))
    delta = np.zeros((T1, Pa))
    delta[:, :P] = y - v["f"].reshape(T1, Pa)[:, :P]
    W = lower * (eta * delta.reshape(1, n))
    out = np.zeros_like(q)
    o = lay.unpack(out)
    for l in range(1, L + 1):
        X = np.tile(Kx, (T1, T1)) if l == 1 else v[f"Phi{l - 1}"]
        Y = np.ones((n, n)) if l == L else v[f"G{l + 1}"]
        C = X * W + (0 if l == 1 else v[f"A{l - 1}"])
        E = Y * W + (0 if l == L else v[f"B{l}"])
        M = np.linalg.inv(np.eye(n) - g0**2 * C @ E)
        N = np.linalg.inv(np.eye(n) - g0**2 * E @ C)
        o[f"Phi{l}"][...] = M @ (X + g0**2 * C @ Y @ C.T) @ M.T
        o[f"G{l}"][...] = N @ (Y + g0**2 * E @ X @ E.T) @ N.T
        if l < L:
            o[f"A{l}"][...] = M @ C
        if l > 1:
            o[f"B{l - 1}"][...] = N @ E
        if l == L:
            o["f"][...] = np.diag(M @ (X @ E.T + C @ Y) @ N.T)
    return out


def test_jacobian_matches_central_differences():
    """D v = (F(q + h v) - F(q - h v)) / 2h at the saddle for random v (anti-causal entries of
    A, B included), L = 3, P = 2. Step h = 1e-5, |D v| up to ~25 (v has ~1000 unit entries):
    truncation ~h^2 |D''| ~1e-9 relative, rounding ~1e-11 / h; measured worst 6e-9 relative,
    hence rtol = atol = 1e-7."""
    d = sd.default_data()
    data = sd.Data(d.X[:2], d.y[:2])
    L, g0, eta, T = 3, 1.2, 0.15, 4
    res = solve_linear_rich(sd.mlp(L, "linear", g0), data, sd.TimeGrid(eta, T))
    n = (T + 1) * 2
    lay = _Layout(L, n)
    q = np.zeros(lay.size)
    v = lay.unpack(q)
    for l in range(1, L + 1):
        v[f"Phi{l}"][...], v[f"G{l}"][...] = res.Phi[l - 1].reshape(n, n), res.G[l - 1].reshape(n, n)
    for l in range(1, L):
        v[f"A{l}"][...], v[f"B{l}"][...] = res.A[l - 1].reshape(n, n), res.B[l - 1].reshape(n, n)
    v["f"][...] = res.f.reshape(-1)
    args = (lay, L, g0, eta, data.Kx_all, data.y, 2, 2)
    np.testing.assert_allclose(_saddle_map(q, *args), q, atol=1e-12)  # q is the fixed point
    D = saddle_jacobian(res, lay, g0, eta, 2, 2)
    rng = np.random.default_rng(1)
    for _ in range(3):
        t = rng.standard_normal(lay.size)
        h = 1e-5
        fd = (_saddle_map(q + h * t, *args) - _saddle_map(q - h * t, *args)) / (2 * h)
        np.testing.assert_allclose(D @ t, fd, rtol=1e-7, atol=1e-7)


def test_covariance_symmetric_psd():
    """O9: N Cov f is symmetric and positive semi-definite (eigenvalues >= -1e-10 max)."""
    d = sd.default_data()
    data = sd.Data(d.X[:2], d.y[:2], X_test=d.X_test)
    r = solve_linear_propagator(sd.mlp(2, "linear", 1.5), data, sd.TimeGrid(0.15, 5))
    C = r.f_cov.reshape(18, 18)
    np.testing.assert_allclose(C, C.T, atol=1e-12 * np.abs(C).max())
    assert np.linalg.eigvalsh(C).min() >= -1e-10 * np.abs(C).max()


# ---- against trained networks (THEORY.md §5) --------------------------------------------
#
# One input (x.x/D = 1, y = 1), eta = 0.1: L = 2, gamma0 = 1.5, 10 steps, E = 2000 (seed 7)
# and L = 3, gamma0 = 1, 8 steps, E = 2000 (seed 3), at N = 256 and 512. A variance from E
# networks has relative standard error se = sqrt(2/(E-1)) = 3.2%; the two-width
# extrapolation 2 v_512 - v_256 removes the O(1/N) term and has relative error sqrt(5) se.
# Outputs are compared while their variance is O(1) (t <= 0.5, 0.4: t sqrt(N Var K / N)
# <= 0.2); later f has decayed to ~1e-3 of its scale and the O(1/N) terms dominate its tiny
# variance (THEORY.md §5: not a bug; measured N = 512 excess 27% / 85% at the last step).
CASES = {2: (1.5, 10, 2000, 7, 6), 3: (1.0, 8, 2000, 3, 5)}  # gamma0, steps, E, seed, f steps


@pytest.fixture(scope="module", params=[2, 3])
def two_widths(request):
    L = request.param
    g0, steps, E, seed, f_steps = CASES[L]
    net, grid = sd.mlp(L, "linear", g0), sd.TimeGrid(0.1, steps)
    var = {}
    for N in (256, 512):
        s = sd.simulate(net, ONE_INPUT, grid, N, E, seed=seed)
        var[N] = {k: N * v[:, :, 0, 0].var(0, ddof=1) for k, v in s.kernels.items()}
        var[N]["f"] = N * s.f[:, :, 0].var(0, ddof=1)
    return (L, E, f_steps, solve_linear_propagator(net, ONE_INPUT, grid),
            solve_linear_propagator(net, ONE_INPUT, grid, responses_noise=False), var)


def _rel_se(E):
    return np.sqrt(2 / (E - 1))


@pytest.mark.slow
def test_variances_against_two_widths(two_widths):
    """N Var of every layer's Phi^l(t,t), G^l(t,t), of K(t) at every step, and of f(t) while
    O(1): the two-width extrapolation within 4 of its standard errors, and each width within
    4 sampling errors plus 20% (N = 256) / 10% (N = 512) for O(1/N). Measured: kernels within
    6.6% (256), 4.9% (512), 9.7% (extrapolated, G1 at L = 3: 1.4 of its standard errors);
    f within 20% / 12% / 19%, the extrapolation's worst at t = 0 where N Var f(0) = 1/gamma0^2 holds exactly
    at every N (pure sampling error, 2.4 standard errors)."""
    L, E, f_steps, r, _, var = two_widths
    se = _rel_se(E)
    for name in var[256]:
        th = r.f_var[:, 0] if name == "f" else r.kernels_var[name][:, 0, 0]
        keep = slice(0, f_steps) if name == "f" else slice(None)
        th, v256, v512 = th[keep], var[256][name][keep], var[512][name][keep]
        extrap = 2 * v512 - v256
        assert np.all(np.abs(extrap / th - 1) <= 4 * np.sqrt(5) * se), (L, name)
        assert np.all(np.abs(v512 / th - 1) <= 4 * se + 0.10), (L, name)
        assert np.all(np.abs(v256 / th - 1) <= 4 * se + 0.20), (L, name)


@pytest.mark.slow
def test_without_response_noise_fails(two_widths):
    """Dropping the A-B fluctuations (kappa over the physical psi only) misses the final NTK
    variance by a factor 3-4 (L = 2: 28.4 vs 7.2 at N = 512, the full theory 7.36, 93
    standard errors; L = 3: 95 vs 29.0, theory 29.8, 72 standard errors): more than 20 at
    both widths."""
    L, E, _, _, r0, var = two_widths
    th0 = r0.kernels_var["K"][-1, 0, 0]
    for N in (256, 512):
        v = var[N]["K"][-1]
        assert abs(th0 - v) > 20 * _rel_se(E) * v, (L, N, th0, v)  # error bar of v: se v


def test_theory_form_with_response_conjugates():
    """THEORY.md §3 / O9 with the responses: reading the anti-causal entries of B (of A) as the
    conjugates of A (of B), the Hessian takes the form d2S/dq'dq' = 0 (exactly: every entry
    is a sum of products with disjoint causal supports), d2S/dw'dq' = I - D' with D' zero
    above its time slice max(t, s) and nilpotent within it (so I - D' is unit lower
    triangular in a suitable order), and (I - D')^{-1} kappa' (I - D')^{-T} equals the full
    -(H^{-1}) on q' (1e-12 relative: two dense solves of size ~10^3). L = 3, P = 2, 3 steps."""
    from symdmft.deep.linear_action import action_hessian, theory_form
    from symdmft.deep.linear_propagator import _saddle_tangents, site_kappa

    d = sd.default_data()
    data = sd.Data(d.X[:2], d.y[:2])
    L, g0, eta, T, Pa = 3, 1.2, 0.15, 3, 2
    res = solve_linear_rich(sd.mlp(L, "linear", g0), data, sd.TimeGrid(eta, T))
    lay = _Layout(L, (T + 1) * Pa)
    out, geo = _saddle_tangents(res, lay, g0, eta, 2, Pa)
    D = saddle_jacobian(res, lay, g0, eta, 2, Pa)
    H = action_hessian(res, lay, out, geo, site_kappa(res, lay, g0, eta, 2, Pa), D, g0, eta)
    tf = theory_form(lay, H, g0, T + 1, Pa)
    q, sl, ImD = tf["q"], tf["slice"], tf["I_minus_D"]
    assert np.abs(tf["Hqq"]).max() == 0.0
    np.testing.assert_allclose(np.diag(ImD), 1.0, atol=1e-14)
    assert np.abs(ImD[sl[:, None] < sl[None, :]]).max() == 0.0
    Dp = np.eye(q.size) - ImD
    for s in range(T + 1):
        b = np.flatnonzero(sl == s)
        block = Dp[np.ix_(b, b)]
        assert np.abs(np.linalg.matrix_power(block, b.size)).max() < 1e-12
    Sigma_full = -np.linalg.solve(H, np.eye(H.shape[0])[:, q])[q]
    R = np.linalg.inv(ImD)
    Sigma = R @ tf["kappa"] @ R.T
    np.testing.assert_allclose(Sigma, Sigma_full, rtol=0, atol=1e-12 * np.abs(Sigma_full).max())


def test_lazy_limit_centred_matches_lazy_solve():
    """Centred L = 2 net, two training points and a test point: as gamma0 -> 0, N Cov f and
    N Var K tend to ``sd.lazy_solve`` (static random NTK, an independent derivation) with
    an O(gamma0^2) gap: measured 1.7e-5 / 4.3e-6 of the scale at gamma0 = 1e-2 / 5e-3, so
    bound 1e-4 and a ratio 4 within 10%. Without the response fluctuations the gap stays at
    4.1% however small gamma0 is: they are part of the answer even in the lazy limit."""
    d = sd.default_data()
    data = sd.Data(d.X[:2], d.y[:2], X_test=d.X_test)
    grid = sd.TimeGrid(0.2, 4)
    gaps = []
    for g0 in (1e-2, 5e-3):
        net = sd.mlp(2, "linear", g0, center=True)
        lazy = sd.lazy_solve(net, data, grid)
        r = solve_linear_propagator(net, data, grid)
        scale = np.abs(lazy.f_cov).max()
        gaps.append(np.abs(r.f_cov - lazy.f_cov).max() / scale)
        assert gaps[-1] < 1e-4
        np.testing.assert_allclose(r.kernels_var["K"], lazy.ntk_var, rtol=1e-3)
        r0 = solve_linear_propagator(net, data, grid, responses_noise=False)
        assert np.abs(r0.f_cov - lazy.f_cov).max() / scale > 0.03
    assert gaps[0] / gaps[1] == pytest.approx(4.0, rel=0.1)


@pytest.mark.slow
def test_prediction_covariance_two_points_and_test_point():
    """L = 2, gamma0 = 1.5, two training points and the default test point, eta = 0.15, 4 steps,
    E = 2000 at N = 192 and 384 (seed 4; above N ~ 400 the simulator is 10x slower with
    P_all = 3, its forward einsum leaving BLAS): every entry of N Cov(f_mu(t), f_nu(s)) (train and
    test points, all time pairs: 225 correlated entries) within 5 standard errors at each
    width, sqrt((C_ii C_jj + C_ij^2) / (E-1)) for a covariance entry, and the two-width
    extrapolation within 4.5 of its own (sqrt(5) times larger). Measured: 2.5 and 3.8 at the
    two widths, 2.5 extrapolated; N Var K within 7.1% of the theory at both widths."""
    d = sd.default_data()
    data = sd.Data(d.X[:2], d.y[:2], X_test=d.X_test)
    net, grid, E = sd.mlp(2, "linear", 1.5), sd.TimeGrid(0.15, 4), 2000
    r = solve_linear_propagator(net, data, grid)
    th = r.f_cov
    var = np.einsum("tptp->tp", th)
    se = np.sqrt((var[:, :, None, None] * var[None, None] + th**2) / (E - 1))
    cov = {}
    for N in (192, 384):
        s = sd.simulate(net, data, grid, N, E, seed=4)
        x = s.f - s.f.mean(0)
        cov[N] = N * np.einsum("etp,esq->tpsq", x, x) / (E - 1)
        assert np.abs(cov[N] - th).max() <= 5 * se.max() and np.all(np.abs(cov[N] - th) <= 5 * se), N
        kv = N * s.ntk.var(0, ddof=1)
        assert np.all(np.abs(kv / r.kernels_var["K"] - 1) <= 4 * _rel_se(E) + 0.10), N
    extrap = 2 * cov[384] - cov[192]
    assert np.all(np.abs(extrap - th) <= 4.5 * np.sqrt(5) * se)


def test_sd_solve_dispatches_deep_linear_nets_to_the_closed_form_and_matrix_free_propagator():
    """sd.solve on a deep linear net is the closed-form saddle plus the matrix-free propagator:
    the dense propagator's numbers (1e-12, rounding) where that one fits, and fluctuations
    beyond its reach too (L = 3, three points and a test point, 12 steps: 29,744 dense rows)."""
    net, grid = sd.mlp(2, "linear", 1.0), sd.TimeGrid(0.1, 3)
    res = sd.solve(net, ONE_INPUT, grid)
    ref = solve_linear_propagator(net, ONE_INPUT, grid)
    np.testing.assert_allclose(res.f_cov, ref.f_cov, rtol=1e-12)
    np.testing.assert_allclose(res.ntk_var, ref.ntk_var, rtol=1e-12)
    assert res.params["fluctuations"].startswith("matrix-free")
    big = sd.solve(sd.mlp(3, "linear", 1.0), sd.default_data(), sd.TimeGrid(0.1, 12))
    np.testing.assert_allclose(big.f, solve_linear_rich(sd.mlp(3, "linear", 1.0), sd.default_data(),
                                                       sd.TimeGrid(0.1, 12)).f)
    assert big.f_var.shape == (13, 4) and np.all(big.f_var > 0)
    assert np.all(np.isfinite(big.ntk_var[-1]))
