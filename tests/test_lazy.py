"""Lazy limit of deep networks: ``sd.lazy_solve`` (THEORY.md §3 "Lazy limit", O5, §5).

Exact checks of the first-order algebra (no sampling):

* O5: one input, gradient flow, ``N Cov(Delta(t), Delta(s)) = kappa y^2 t s e^{-lambda (t+s)}``
  with ``lambda = Kbar``, ``kappa = N Var K`` (1e-12: closed forms on both sides).
* The response ``T_k`` of the predictions to dK against central differences of the exact
  lazy recursions (discrete GD) and against ``scipy.linalg.expm_frechet`` of the augmented
  flow generator, train and test rows, with a generic and a fully degenerate spectrum
  (the equal-eigenvalue limits). Step 1e-6: truncation ~1e-12, rounding ~1e-10; tol 1e-7.
* Discrete GD -> gradient flow as eta -> 0 (first order in eta: halving eta halves the gap).

Against trained networks (the ground truth, THEORY.md §5): ``sd.simulate`` ensembles of
E = 3000 centred networks with gamma0 = 0.02 trained by the same GD (eta = 0.25), L = 2
and 3, tanh and relu, widths 128 and 256 (an L = 3 ensemble of 3000 networks at N = 512
takes about 2 minutes here, which does not fit the suite's budget), on the default
problem (3 train + 1 test point). Compared: ``N Var`` of every K(0) entry and of the
per-layer Phi^l, G^l diagonals at t = 0, and ``N Var f_mu(t)`` / ``N Cov(f_mu(t), f_nu(s))``
on train and test points at the times where the expansion holds,
``t sqrt(max N Var K / N) <= 0.3`` (THEORY.md §5). Tolerance per entry, ``4 se + a |theory|``:

* se: standard error of a (co)variance from E networks, ``sqrt((m22 - c^2) / E)`` with the
  sample fourth moment (``compare.variance_with_error``), about 2.6-4% here; 4 se keeps
  the false-alarm rate of the ~300 correlated comparisons below ~1%.
* a = (1/SNR_K + 1.5 s^2): the O(1/N) relative corrections. 1/SNR_K = max_mu N Var K_mumu /
  K_mumu^2; the exact finite-N kernel variances have relative corrections (1/SNR)/(2N) for
  relu (Hanin & Nica 2019, ``E K^2 / (E K)^2 = exp(5L/N)``) and below that for deep linear
  nets (O6 at finite N: ``N((1+2/N)^l - 1) = 2l (1 + (l-1)/N + ...)``); twice that is
  allowed. ``s^2 = t^2 max N Var K / N`` is the accumulated kernel fluctuation; for a scalar
  Gaussian kernel ``Var e^{-Kt} = e^{-2Kbar t} s^2 (1 + 3 s^2 / 2 + ...)``, hence 1.5 s^2.
* O(gamma0^2) feature-learning corrections: gamma0^2 = 4e-4, negligible next to the above.
The two widths are also combined into the 1/N-free estimate ``(N2 v2 - N1 v1) / (N2 - N1)``
and compared with the theory at its own standard error.
"""
import numpy as np
import pytest
from scipy.linalg import expm, expm_frechet

import symdmft as sd
from symdmft.deep.lazy import lazy_response
from symdmft.observables.compare import variance_with_error


# ---------------------------------------------------------------------------------------
# exact checks of the lazy algebra
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation, L", [("linear", 2), ("tanh", 3)])
def test_o5_single_input_gradient_flow(activation, L):
    y = 0.7
    data = sd.Data(np.ones((1, 4)), [y])
    net = sd.mlp(hidden_layers=L, activation=activation, gamma0=0.01, center=True)
    grid = sd.TimeGrid(eta=0.05, steps=40)
    res = sd.lazy_solve(net, data, grid, flow=True)
    st = sd.initial_statistics(net, data)
    lam, kappa = st.ntk[0, 0], st.var["K"][0, 0]
    if activation == "linear":
        assert (lam, kappa) == pytest.approx((L + 1, 2 / 3 * L * (L + 1) * (2 * L + 1)))
    t = grid.t
    expected = kappa * y**2 * np.outer(t, t) * np.exp(-lam * (t[:, None] + t[None, :]))
    np.testing.assert_allclose(res.f_cov[:, 0, :, 0], expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.f[:, 0], y * (1 - np.exp(-lam * t)), rtol=1e-12)


def _gd_exact(K, y, eta, steps):
    P = y.size
    delta, f_test, out = y.copy(), np.zeros(K.shape[0] - P), []
    for _ in range(steps + 1):
        out.append(np.concatenate([y - delta, f_test]))
        f_test = f_test + eta * K[P:, :P] @ delta
        delta = delta - eta * K[:P, :P] @ delta
    return np.array(out)


def _flow_exact(K, y, t, dK=None):
    P, Pa = y.size, K.shape[0]
    A = np.zeros((Pa, Pa))
    A[:P, :P], A[P:, :P] = -K[:P, :P], K[P:, :P]
    z0 = np.concatenate([y, np.zeros(Pa - P)])
    if dK is None:
        z = np.array([expm(A * s) @ z0 for s in t])
        return np.concatenate([y - z[:, :P], z[:, P:]], axis=1)
    dA = np.zeros((Pa, Pa))
    dA[:P, :P], dA[P:, :P] = -dK[:P, :P], dK[P:, :P]
    dz = np.array([expm_frechet(A * s, dA * s, compute_expm=False) @ z0 for s in t])
    return np.concatenate([-dz[:, :P], dz[:, P:]], axis=1)


def _kernels(degenerate):
    rng = np.random.default_rng(8)
    P, Pa = 3, 5
    X = rng.standard_normal((Pa, 6))
    K = X @ X.T / 6 + 0.5 * np.eye(Pa)
    if degenerate:  # every training eigenvalue equal: the divided differences' limits
        K[:P, :P] = 1.3 * np.eye(P)
    dK = rng.standard_normal((Pa, Pa))
    return K, (dK + dK.T) / 2, rng.standard_normal(P)


@pytest.mark.parametrize("degenerate", [False, True])
def test_gd_response_matches_finite_differences(degenerate):
    K, dK, y = _kernels(degenerate)
    grid = sd.TimeGrid(eta=0.3, steps=25)
    f, T = lazy_response(K, y, grid, flow=False)
    np.testing.assert_allclose(f, _gd_exact(K, y, grid.eta, grid.steps), rtol=1e-12, atol=1e-13)
    eps = 1e-6
    fd = (_gd_exact(K + eps * dK, y, grid.eta, grid.steps)
          - _gd_exact(K - eps * dK, y, grid.eta, grid.steps)) / (2 * eps)
    np.testing.assert_allclose(np.einsum("kuab,ab->ku", T, dK[:, :3]), fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("degenerate", [False, True])
def test_flow_response_matches_frechet_derivative(degenerate):
    K, dK, y = _kernels(degenerate)
    grid = sd.TimeGrid(eta=0.2, steps=20)
    f, T = lazy_response(K, y, grid, flow=True)
    np.testing.assert_allclose(f, _flow_exact(K, y, grid.t), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.einsum("kuab,ab->ku", T, dK[:, :3]), _flow_exact(K, y, grid.t, dK),
                               rtol=1e-8, atol=1e-10)


def test_flow_response_near_degenerate_is_continuous():
    """Eigenvalue gaps of 1e-9 (Taylor branch) and 1e-2 (direct branch) agree with expm_frechet."""
    for gap in (1e-9, 1e-2):
        K, dK, y = _kernels(True)
        K[:3, :3] = np.diag([1.3, 1.3 + gap, 2.0])
        grid = sd.TimeGrid(eta=0.5, steps=6)
        _, T = lazy_response(K, y, grid, flow=True)
        np.testing.assert_allclose(np.einsum("kuab,ab->ku", T, dK[:, :3]), _flow_exact(K, y, grid.t, dK),
                                   rtol=1e-8, atol=1e-10)


def test_gd_converges_to_flow_at_first_order_in_eta():
    net = sd.mlp(hidden_layers=2, activation="tanh", gamma0=0.01, center=True)
    data = sd.default_data()
    st = sd.initial_statistics(net, data)
    flow = sd.lazy_solve(net, data, sd.TimeGrid(eta=0.1, steps=10), flow=True, stats=st)
    gaps = []
    for eta in (0.02, 0.01):
        gd = sd.lazy_solve(net, data, sd.TimeGrid(eta=eta, steps=round(1 / eta)), stats=st)
        gaps.append(np.abs(gd.f_cov[-1, :, -1] - flow.f_cov[-1, :, -1]).max())
    assert gaps[1] / gaps[0] == pytest.approx(0.5, abs=0.03)


def test_lazy_solve_needs_a_centred_network():
    with pytest.raises(ValueError, match="center"):
        sd.lazy_solve(sd.mlp(hidden_layers=2), sd.default_data(), sd.TimeGrid(0.1, 5))


# ---------------------------------------------------------------------------------------
# against trained ensembles
# ---------------------------------------------------------------------------------------
WIDTHS = (128, 256)
ENSEMBLE = 3000
GAMMA0 = 0.02
GRID = sd.TimeGrid(eta=0.25, steps=8)
EXPANSION_LIMIT = 0.3           # compare where t sqrt(max N Var K / N) <= 0.3


def _cov_with_error(x, y):
    """Covariance over axis 0 and its standard error sqrt((m22 - c^2) / E)."""
    E = x.shape[0]
    dx, dy = x - x.mean(0), y - y.mean(0)
    c = np.sum(dx * dy, axis=0) / (E - 1)
    m22 = np.mean(dx**2 * dy**2, axis=0)
    return c, np.sqrt(np.maximum(m22 - c**2, 0) / E)


@pytest.fixture(scope="module", params=[("tanh", 2), ("tanh", 3), ("relu", 2), ("relu", 3)],
                ids=lambda p: f"{p[0]}-L{p[1]}")
def case(request):
    activation, L = request.param
    net = sd.mlp(hidden_layers=L, activation=activation, gamma0=GAMMA0, center=True)
    data = sd.default_data()
    stats = sd.initial_statistics(net, data)
    theory = sd.lazy_solve(net, data, GRID, stats=stats)
    sims = {N: sd.simulate(net, data, GRID, width=N, ensemble=ENSEMBLE, seed=100 + L, progress=False)
            for N in WIDTHS}
    P = data.P
    diag = np.diag(stats.var["K"])[:P]
    inv_snr = np.max(diag / np.diag(stats.ntk)[:P] ** 2)
    return stats, theory, sims, inv_snr, diag.max(), P


def _allowance(inv_snr, v_max, t, N):
    return inv_snr / N + 1.5 * t**2 * v_max / N


def _check(sim_value, sim_se, theory_value, rel):
    tol = 4 * sim_se + rel * np.abs(theory_value)
    bad = np.abs(sim_value - theory_value) > tol
    assert not np.any(bad), (f"sim {sim_value[bad]}, theory {theory_value[bad]}, "
                             f"se {sim_se[bad]}, tol {tol[bad]}")


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_initial_kernel_covariance_matches_ensembles(case, width):
    """N Var of every K(0) entry and of each layer's Phi^l, G^l diagonal at t = 0, and the
    cross-layer covariances N Cov(Phi^{l-1}_mumu, G^l_mumu) (created only by the Price
    sensitivity Jd of G^l to the layer below: about 7 se from zero for tanh) and
    N Cov(Phi^l_mumu, G^l_mumu) (the same neurons' kappa_PG)."""
    stats, _, sims, inv_snr, _, P = case
    rel = _allowance(inv_snr, 0, 0, width)
    kernels = {name: value[:, 0] for name, value in sims[width].kernels.items()}
    for name in ["K"] + [n for n in stats.names if n != "K"]:
        var, se = variance_with_error(kernels[name])
        th = stats.var[name][:P, :P]
        idx = np.triu_indices(P) if name == "K" else np.diag_indices(P)
        _check(width * var[idx], width * se[idx], th[idx], rel)
    L = stats.L
    pairs = [(f"Phi{l - 1}", f"G{l}") for l in range(2, L + 1)] + [(f"Phi{l}", f"G{l}") for l in range(1, L + 1)]
    for a, b in pairs:
        c, se = _cov_with_error(np.einsum("eii->ei", kernels[a]), np.einsum("eii->ei", kernels[b]))
        th = np.einsum("iiii->i", stats.cov(a, b)[:P, :P, :P, :P])
        _check(width * c, width * se, th, rel)


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_lazy_prediction_covariance_matches_ensembles(case, width):
    """N Var f_mu(t) on train and test points and N Cov across times, where the expansion holds."""
    _, theory, sims, inv_snr, v_max, _ = case
    f = sims[width].f
    t = GRID.t
    ok = np.flatnonzero((t > 0) & (t * np.sqrt(v_max / width) <= EXPANSION_LIMIT))
    assert ok.size >= 4
    var, se = variance_with_error(f)
    for k in ok:
        _check(width * var[k], width * se[k], theory.f_var[k], _allowance(inv_snr, v_max, t[k], width))
    k1, k2 = ok[len(ok) // 2], ok[-1]
    c, se_c = _cov_with_error(f[:, k1, :][:, :, None], f[:, k2, :][:, None, :])
    _check(width * c, width * se_c, theory.f_cov[k1, :, k2, :], _allowance(inv_snr, v_max, t[k2], width))


@pytest.mark.slow
def test_width_extrapolated_variances_match_theory(case):
    """(N2 v2 - N1 v1) / (N2 - N1) removes the O(1/N) term: compare at its standard error."""
    stats, theory, sims, inv_snr, v_max, P = case
    N1, N2 = WIDTHS
    t = GRID.t
    ok = np.flatnonzero((t > 0) & (t * np.sqrt(v_max / N1) <= EXPANSION_LIMIT))
    est, err = [], []
    for N in WIDTHS:
        v, s = variance_with_error(sims[N].f[:, ok])
        vk, sk = variance_with_error(np.einsum("eii->ei", sims[N].kernels["K"][:, 0]))
        est.append(N * np.concatenate([v.ravel(), vk]))
        err.append(N * np.concatenate([s.ravel(), sk]))
    extrapolated = (N2 * est[1] - N1 * est[0]) / (N2 - N1)
    se = np.hypot(N2 * err[1], N1 * err[0]) / (N2 - N1)
    th = np.concatenate([theory.f_var[ok].ravel(), np.diag(stats.var["K"])[:P]])
    rel = _allowance(inv_snr, v_max, t[ok].max(), N1) ** 2          # the O(1/N^2) remainder
    _check(extrapolated, se, th, rel)
