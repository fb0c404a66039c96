"""Self-checks of the independent oracles in tests/oracles (no symdmft import anywhere).

The oracles are checked against each other and against closed forms:

* two_layer_linear_ode      : hand-derived O1-O5 (THEORY.md section 4)
* two_layer_linear_exact    : exact finite-N reduction of the linear P = 1 net + delta method
* naive_two_layer_blocks    : naive SymPy blocks (kappa, D_f, mean) of the prediction-only form
* gaussian_quadrature_reference : Gauss-Hermite / Monte Carlo site averages
* finite_width_network      : brute-force trained networks with explicit weight matrices

Tolerances are stated per test; "rounding" means double-precision accumulation over a few
hundred operations (~1e-13 relative), "ODE" means solve_ivp at rtol 1e-11 / 1e-12.
"""
import numpy as np
import pytest
import sympy as sp

try:  # works with tests/ on sys.path (pytest rootdir insertion) or run from the repo root
    from oracles import two_layer_linear_ode as ode
    from oracles import two_layer_linear_exact as exact
    from oracles import naive_two_layer_blocks as naive
    from oracles import gaussian_quadrature_reference as gq
    from oracles import finite_width_network as fwn
except ImportError:  # pragma: no cover
    from tests.oracles import two_layer_linear_ode as ode
    from tests.oracles import two_layer_linear_exact as exact
    from tests.oracles import naive_two_layer_blocks as naive
    from tests.oracles import gaussian_quadrature_reference as gq
    from tests.oracles import finite_width_network as fwn

PARAMS = [(1.0, 1.0), (1.3, 0.8), (-0.7, 2.5), (2.0, 0.3)]   # (y, gamma0)


# ----------------------------------------------------------------------------------- O1
@pytest.mark.parametrize("y,gamma0", PARAMS)
def test_o1_limits(y, gamma0):
    """(a) K(t) -> K_inf = 2 sqrt(1 + gamma0^2 y^2) at large t; K(0) = 2, Delta(0) = y.

    Delta decays at rate >= 2, so at t = 20 Delta ~ e^-40: K(20) equals K_inf up to the ODE
    tolerance (rtol 1e-11) -> assert 1e-9 relative.
    """
    res = ode.o1_gradient_flow(y, gamma0, [0.0, 20.0])
    H_inf, K_inf = ode.o1_final_kernels(y, gamma0)
    assert res.K[0] == pytest.approx(2.0, rel=1e-14)
    assert res.Delta[0] == pytest.approx(y, rel=1e-14)
    assert res.K[1] == pytest.approx(K_inf, rel=1e-9)
    assert res.f[1] == pytest.approx(y, rel=1e-9)
    assert K_inf == pytest.approx(2 * np.sqrt(1 + gamma0 ** 2 * y ** 2), rel=1e-15)
    assert H_inf == pytest.approx(K_inf / 2, rel=1e-15)


@pytest.mark.parametrize("y,gamma0", PARAMS)
def test_o1_from_moment_odes(y, gamma0):
    """O1's K(t) = 2 sqrt(1 + gamma0^2 f^2) against the un-reduced moment ODEs of the site process
    (dH/dt = dG/dt = 2 gamma0^2 f Delta, df/dt = (H + G) Delta) and against the exact tau
    reduction. Both are ODE solutions at rtol >= 1e-11 -> assert 1e-8.
    """
    from scipy.integrate import solve_ivp
    t = np.linspace(0, 3, 13)

    def rhs(_t, z):
        H, G, f = z
        d = y - f
        return [2 * gamma0 ** 2 * f * d, 2 * gamma0 ** 2 * f * d, (H + G) * d]

    sol = solve_ivp(rhs, (0, 3), [1.0, 1.0, 0.0], t_eval=t, method="DOP853",
                    rtol=1e-12, atol=1e-14)
    H, G, f = sol.y
    res = ode.o1_gradient_flow(y, gamma0, t)
    np.testing.assert_allclose(res.f, f, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.K, H + G, rtol=1e-8)
    np.testing.assert_allclose(H ** 2 - gamma0 ** 2 * f ** 2, 1.0, rtol=1e-8)
    gf = exact.gradient_flow_fluctuations(y, gamma0, t)
    np.testing.assert_allclose(gf["K"], res.K, rtol=1e-8)
    np.testing.assert_allclose(gf["f"], res.f, rtol=1e-8, atol=1e-10)


# ------------------------------------------------------------------------------- O2 / O3
def test_o2_o3_symbolic_exact_map():
    """O2/O3 closed forms == symbolic delta method on the exact finite-N end-point map (exact)."""
    y, g = sp.symbols("y gamma0", positive=True)
    S = 1 + g ** 2 * y ** 2
    res = exact.exact_final_fluctuations()
    assert sp.simplify(res["N_var_K_inf"] - 4 / S) == 0
    assert sp.simplify(res["N_var_H_inf"] - (1 + 1 / S)) == 0
    assert sp.simplify(res["N_bias_K_inf"] + S ** sp.Rational(-3, 2)) == 0
    num = ode.o2_o3_final_variances(1.3, 0.8)
    for key in ("N_var_K_inf", "N_var_H_inf", "N_bias_K_inf"):
        assert float(res[key].subs({y: 1.3, g: 0.8})) == pytest.approx(num[key], rel=1e-14)


@pytest.mark.parametrize("y,gamma0", PARAMS)
def test_o2_o3_from_gradient_flow_path(y, gamma0):
    """N Var K(t), N Var H(t) of the tau reduction at t = 14 equal O2/O3 (convergence e^-28
    relative; ODE rtol 1e-12 -> 1e-7)."""
    gf = exact.gradient_flow_fluctuations(y, gamma0, [0.0, 14.0])
    o = ode.o2_o3_final_variances(y, gamma0)
    assert gf["N_var_K"][0] == pytest.approx(4.0, rel=1e-12)   # Var(h^2 + w^2) at t = 0
    assert gf["N_var_K"][1] == pytest.approx(o["N_var_K_inf"], rel=1e-7)
    assert gf["N_var_H"][1] == pytest.approx(o["N_var_H_inf"], rel=1e-7)


def test_o2_o3_from_discrete_gd_richardson():
    """Discrete-GD exact reduction (eta, eta/2; t = 8) -> O2/O3 incl. the bias. The discrete
    values differ by O(eta) (measured ~0.3 eta relative); Richardson 2X(eta/2) - X(eta) removes
    it, leaving O(eta^2) ~ 1e-4 -> assert 2e-3 relative."""
    y, g = 1.0, 1.0
    o = ode.o2_o3_final_variances(y, g)
    vals = []
    for eta in (0.02, 0.01):
        d = exact.discrete_fluctuations(y, g, eta, int(round(8 / eta)))
        vals.append(np.array([d["N_cov_K"][-1, -1], d["N_cov_H"][-1, -1], d["N_bias_K"][-1]]))
    rich = 2 * vals[1] - vals[0]
    ref = np.array([o["N_var_K_inf"], o["N_var_H_inf"], o["N_bias_K_inf"]])
    np.testing.assert_allclose(rich, ref, rtol=2e-3)


# ----------------------------------------------------------------------------------- O4
@pytest.mark.parametrize("y,gamma0", PARAMS)
def test_o4_initial_value_is_o7(y, gamma0):
    """(b) O4 at t = 0: N Var f(0) = 1/gamma0^2 = Phi(0,0)/gamma0^2 with Phi = Kx = 1 (O7)."""
    assert ode.o4_prediction_variance(y, gamma0, 0.0) == pytest.approx(1 / gamma0 ** 2,
                                                                       rel=1e-14)


@pytest.mark.parametrize("y,gamma0", PARAMS)
def test_o4_vs_exact_gradient_flow_reduction(y, gamma0):
    """O4's alpha^2 + 4 beta^2 equals the delta-method N Var f(t) of the exact tau reduction;
    both ODE solutions (rtol 1e-11/1e-12) -> assert 1e-7 relative (atol 1e-12 for the
    exponentially small late values)."""
    t = np.array([0.0, 0.05, 0.3, 0.7, 1.5, 3.0, 6.0])
    nv, al, be = ode.o4_prediction_variance(y, gamma0, t, return_components=True)
    gf = exact.gradient_flow_fluctuations(y, gamma0, t)
    np.testing.assert_allclose(nv, gf["N_var_f"], rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(al, gf["J_f"][:, 0], rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(be, gf["J_f"][:, 1], rtol=1e-7, atol=1e-12)


def test_o4_from_discrete_gd_richardson():
    """Discrete-GD exact N Var f at t = 0.5, 1, 2 -> O4. Richardson in eta (0.01, 0.005) leaves
    O(eta^2) whose relative size grows with t as the variance decays (~e^-8 at t = 2): measured
    ~1e-3 at t = 2 -> assert 2e-3 relative."""
    y, g = 1.3, 0.8
    ts = np.array([0.5, 1.0, 2.0])
    vals = []
    for eta in (0.01, 0.005):
        d = exact.discrete_fluctuations(y, g, eta, int(round(2 / eta)))
        k = np.rint(ts / eta).astype(int)
        vals.append(np.diag(d["N_cov_f"])[k])
    np.testing.assert_allclose(2 * vals[1] - vals[0], ode.o4_prediction_variance(y, g, ts),
                               rtol=2e-3)


# ----------------------------------------------------------------------------------- O5
def test_o5_discrete_tends_to_continuous():
    """(e) discrete O5 -> continuous O5 as eta -> 0 at fixed t = k eta, s = j eta.
    Expanding (k + j - 2) log(1 - eta lam), the relative error is
    eta |2 lam - lam^2 (t + s)/2| + O(eta^2) (= eta for lam = 2, t + s = 1.5; t + s = 2 would
    cancel the first order); assert it is below 1.2x that and that halving eta halves it
    (first order: ratio 2 +- 0.1)."""
    y, kap, lam = 0.8, ode.O5_LINEAR_KAPPA, ode.O5_LINEAR_LAMBDA
    t, s = 0.5, 1.0
    cont = ode.o5_lazy_delta_cov(y, kap, lam, t, s)
    errs = []
    for eta in (2e-3, 1e-3):
        k, j = round(t / eta), round(s / eta)
        disc = ode.o5_lazy_delta_cov_discrete(y, kap, lam, eta, k, j)
        err = abs(disc / cont - 1)
        assert err < 1.2 * eta * abs(2 * lam - lam ** 2 * (t + s) / 2)
        errs.append(err)
    assert errs[0] / errs[1] == pytest.approx(2.0, abs=0.1)
    assert ode.o5_lazy_delta_cov_discrete(y, kap, lam, 0.1, 0, 5) == 0.0


@pytest.mark.parametrize("Kx", [1.0, 1.6])
def test_o5_discrete_vs_exact_lazy_reduction(Kx):
    """Discrete O5 with kappa = 4 Kx^2, lam = 2 Kx equals the exact centred reduction's
    N Cov(Delta) at gamma0 = 1e-4 (lazy limit; corrections O(gamma0^2) = 1e-8) -> 1e-6."""
    y, eta, T = 0.8, 0.1, 8
    d = exact.discrete_fluctuations(y, 1e-4, eta, T, Kx=Kx, center=True)
    k = np.arange(T + 1)
    ref = ode.o5_lazy_delta_cov_discrete(y, 4 * Kx ** 2, 2 * Kx, eta, k[:, None], k[None, :])
    np.testing.assert_allclose(d["N_cov_f"], ref, rtol=1e-6, atol=1e-12)


# ------------------------------------------------------------------------- naive blocks
def _random_values(T, seed):
    rng = np.random.default_rng(seed)
    vals = {"eta": rng.uniform(0.05, 0.4), "gamma0": rng.uniform(0.5, 2.0),
            "Kx": rng.uniform(0.5, 2.0)}
    deltas = rng.uniform(-1.5, 1.5, size=T)
    vals.update({f"Delta_{k}": d for k, d in enumerate(deltas)})
    return vals, deltas


def _num(M, vals):
    return np.array(M.applyfunc(lambda e: naive.subs_by_name(e, vals)).evalf(), dtype=float)


@pytest.mark.parametrize("T,seed", [(2, 0), (2, 1), (3, 2)])
def test_naive_mean_and_kappa_vs_quadrature(T, seed):
    """(c) naive mean and kappa == 8-node tensor Gauss-Hermite iteration of the site process.
    psi(t) psi(s) has degree 4 in (u, w0) and 8 nodes are exact to degree 15, so only
    rounding remains -> 1e-11 (atol 1e-12 for entries that vanish)."""
    vals, deltas = _random_values(T, seed)
    blocks = naive.naive_blocks(T)
    mean_q, cov_q = gq.quadrature_site_moments(deltas, vals["eta"], vals["gamma0"], vals["Kx"])
    np.testing.assert_allclose(_num(blocks["mean"], vals).ravel(), mean_q, rtol=1e-11,
                               atol=1e-12)
    np.testing.assert_allclose(_num(blocks["kappa"], vals), cov_q, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("T,seed", [(2, 3), (3, 4)])
def test_naive_D_f_vs_finite_difference(T, seed):
    """(d) naive D_f == central difference of the quadrature mean in Delta_s. Each h(k), w(k)
    is multilinear in the Delta's, so <psi> is at most quadratic in any single Delta_s and the
    central difference is exact; step 1e-3 -> rounding ~1e-13/1e-3 -> assert 1e-9."""
    vals, deltas = _random_values(T, seed)
    D_f = _num(naive.naive_blocks(T)["D_f"], vals)
    assert D_f.shape == (T + 1, T + 1)
    assert np.all(np.triu(D_f) == 0.0)          # strictly causal, column T zero
    step = 1e-3
    fd = np.zeros((T + 1, T + 1))
    for s in range(T):
        dp, dm = deltas.copy(), deltas.copy()
        dp[s] += step
        dm[s] -= step
        mp = gq.quadrature_site_moments(dp, vals["eta"], vals["gamma0"], vals["Kx"])[0]
        mm = gq.quadrature_site_moments(dm, vals["eta"], vals["gamma0"], vals["Kx"])[0]
        fd[:, s] = (mp - mm) / (2 * step)
    np.testing.assert_allclose(D_f, fd, rtol=1e-9, atol=1e-9)


def test_naive_mean_vs_monte_carlo():
    """naive mean == 10^6-sample Monte Carlo of the site process within 5 standard errors
    (fixed seed, so deterministic; 5 sigma is a < 1e-6 false-alarm level per entry)."""
    vals, deltas = _random_values(2, 5)
    mean = _num(naive.naive_blocks(2)["mean"], vals).ravel()
    mc, _, se = gq.mc_site_moments(deltas, vals["eta"], vals["gamma0"], vals["Kx"],
                                   n_samples=10 ** 6, seed=0)
    assert np.all(np.abs(mc - mean) <= 5 * se)


@pytest.mark.parametrize("T,seed", [(2, 6), (3, 7)])
def test_naive_prediction_cov_vs_exact_reduction(T, seed):
    """naive (I + D_f)^-1 kappa (I + D_f)^-T at the saddle Delta path == delta-method N Cov(f)
    of the exact discrete reduction (complex-step Jacobian: exact to rounding) -> 1e-10.
    Also entry [0, 0] is O7: Kx / gamma0^2."""
    vals, _ = _random_values(T, seed)
    vals = {k: v for k, v in vals.items() if not k.startswith("Delta")}
    vals["y"] = 0.9
    cov = naive.naive_prediction_cov(T, vals)
    d = exact.discrete_fluctuations(vals["y"], vals["gamma0"], vals["eta"], T, Kx=vals["Kx"])
    np.testing.assert_allclose(cov, d["N_cov_f"], rtol=1e-10, atol=1e-12)
    assert cov[0, 0] == pytest.approx(vals["Kx"] / vals["gamma0"] ** 2, rel=1e-12)
    np.testing.assert_allclose(naive.naive_saddle_deltas(T, vals), d["Delta"], rtol=1e-12)


# --------------------------------------------------------------------- brute-force nets
@pytest.mark.parametrize("center", [False, True])
def test_exact_reduction_vs_bruteforce_network(center):
    """The reduction is exact at any N: a width-40 network with explicit W0 (D = 3, Kx != 1)
    reproduces f, K, H from its own sample means to rounding (1e-12)."""
    X = np.array([[1.2, -0.7, 0.4]])
    Kx = float((X @ X.T)[0, 0] / 3)
    y, g, eta, T = 0.9, 1.1, 0.2, 6
    r = fwn.train_two_layer_ensemble(X, [y], g, eta, T, N=40, E=3, seed=3, center=center)
    for e in range(3):
        m = exact.sample_means(r["h0"][e, :, 0], r["w0"][e], Kx)
        p = exact.discrete_path(m, y, g, eta, T, Kx, center=center)
        np.testing.assert_allclose(p["f"], r["f"][e, :, 0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(p["K"], r["K"][e, :, 0, 0], rtol=1e-12)
        np.testing.assert_allclose(p["H"], r["H"][e, :, 0, 0], rtol=1e-12)


def test_ensemble_vs_naive_prediction_cov():
    """Ground truth: E = 4000 width-256 networks, N Cov(f(t), f(s)) over 4 steps vs the naive
    propagator. Per entry the sampling s.e. of a covariance is sqrt((v_t v_s + c_ts^2)/E)
    (~2.2% of the variance); allow 5 s.e. plus 4/N relative for the O(1/N) correction."""
    N, E, T = 256, 4000, 3
    y, g, eta = 0.9, 1.1, 0.2
    r = fwn.train_two_layer_ensemble(np.array([[1.0, 1.0]]), [y], g, eta, T, N=N, E=E, seed=1)
    emp = N * np.cov(r["f"][:, :, 0].T)
    th = naive.naive_prediction_cov(T, {"eta": eta, "gamma0": g, "Kx": 1.0, "y": y})
    v = np.diag(th)
    scale = np.sqrt(np.outer(v, v))
    tol = 5 * np.sqrt((scale ** 2 + th ** 2) / E) + 4.0 / N * scale
    assert np.all(np.abs(emp - th) <= tol)
