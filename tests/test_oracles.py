"""Acceptance tests of the two-layer solver ``sd.solve`` against THEORY.md section 4.

Oracles (tests/oracles, none of which imports symdmft):

* ``two_layer_linear_ode``   : hand-derived O1-O5 (gradient flow / lazy closed forms).
* ``two_layer_linear_exact`` : exact finite-N reduction of the linear P = 1 net; its delta
  method gives the O(1/N) covariances of DISCRETE gradient descent at any eta, exactly.
* ``naive_two_layer_blocks`` : naive SymPy kappa, D_f and ``(I + D_f)^-1 kappa (I + D_f)^-T``.

Where the tolerances come from
------------------------------
* Quadrature exactness. For the linear net with P = 1 the 'auto' sampler is a tensor
  Gauss-Hermite rule on (u, w0) with round(sqrt(samples)) nodes per axis (10 for
  ``samples=100``), exact for polynomials of degree <= 19 per axis. Every site observable of
  the linear net is a polynomial of degree <= 2 in (u, w0) (h(k), w(k) are linear in them), and
  every covariance of degree <= 4, so the theory is exact up to rounding: comparisons with the
  exact discrete oracle use 1e-10 relative (rounding is ~1e-15 over a few thousand operations).
* O(eta). The oracles O1-O4 are gradient flow; ``sd.solve`` is discrete GD (THEORY.md section 1).
  The first-order discretisation error is computed INDEPENDENTLY here (``moment_flow``, below),
  so the tests check (i) that the error halves when eta halves and (ii) that error / eta equals
  the computed leading coefficient, up to an O(eta) relative remainder.
* O(gamma0^2) for the lazy limit O5; sampling error (stated per test) for O7 on QMC rules.

``moment_flow``: leading O(eta) error coefficient, linear net, P = 1, Kx = 1
--------------------------------------------------------------------------------
Each neuron obeys ``(h, w) -> (h + c w, w + c h)``, ``c = eta gamma0 Delta`` (THEORY.md section 2,
exact at any N), so the sample moments ``z = (a, H, G) = (mean h w, mean h^2, mean w^2)`` obey
the closed recursion

    z(k+1) = z(k) + eta F(z(k)) + eta^2 Q(z(k)),   Delta = y - a / gamma0,
    F = gamma0 Delta (H + G, 2a, 2a),              Q = gamma0^2 Delta^2 (a, G, H)

with f = a / gamma0, Phi1 = H, G1 = G, K = H + G. Gradient flow is ``z' = F(z)``; comparing one
GD step with the exact flow step ``z + eta F + eta^2/2 DF F`` gives the global error
``z_GD(t) - z_GF(t) = eta E(t) + O(eta^2)`` with ``E' = DF E + Q - DF F / 2``, ``E(0) = 0``.
At finite N, ``sqrt(N) (z(0) - (0, 1, 1)) -> N(0, diag(1, 2, 2))`` (Var(hw) = 1, Var(h^2) =
Var(w^2) = 2, all covariances 0), and every quantity X(t) is a deterministic function of z(0),
so ``N Var X = grad X . Sigma . grad X`` (delta method) and at discrete eta
``N Var X_GD = N Var X_GF + eta 2 grad X . Sigma . grad E_X + O(eta^2)``. The gradients w.r.t.
z(0) are central differences (step 1e-5; truncation ~1e-10, ODE noise ~1e-12/1e-5 = 1e-7 relative),
which is far below the percent-level O(eta) effects being checked. The helper is itself checked
against O1, O2, O3 and O4 in ``test_moment_flow_reproduces_o1_to_o4``.
"""
from functools import lru_cache

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import symdmft as sd

try:  # tests/ on sys.path (pytest rootdir insertion) or run from the repo root
    from oracles import two_layer_linear_ode as ode
    from oracles import two_layer_linear_exact as exact
    from oracles import naive_two_layer_blocks as naive
except ImportError:  # pragma: no cover
    from tests.oracles import two_layer_linear_ode as ode
    from tests.oracles import two_layer_linear_exact as exact
    from tests.oracles import naive_two_layer_blocks as naive

Y = 1.3                      # target of the linear P = 1 problems (not 1, so y vs y^2 shows)
GAMMAS = [0.5, 1.5]          # O1-O4 feature strengths
T_SHORT = 3.0                # O1 / O4 horizon
T_LATE = 10.0                # "t -> oo": Delta decays at rate >= K(0) = 2, e^-20 ~ 2e-9
SIGMA_Z = np.diag([1.0, 2.0, 2.0])   # N Cov of z(0) = (mean hw, mean h^2, mean w^2)


# ------------------------------------------------------------------------------ solves
@lru_cache(maxsize=None)
def solve_linear(gamma0, eta, steps, y=Y, Kx=1.0, center=False):
    """Linear two-layer net, one training point with x.x/D = Kx (X = [[sqrt Kx]]).

    ``samples=100`` -> auto = tensor Gauss-Hermite with 10 nodes per axis: exact here (module
    docstring). Cached: results are shared between tests and must be treated as read-only.
    """
    net = sd.mlp(hidden_layers=1, activation="linear", gamma0=gamma0, center=center)
    data = sd.Data(np.array([[np.sqrt(Kx)]]), np.array([y]))
    res = sd.solve(net, data, sd.TimeGrid(eta, steps), samples=100, seed=0)
    assert res.params["sampler"] == "gauss-hermite"
    return res


def steps_for(t_end, eta):
    return int(round(t_end / eta))


# ----------------------------------------------------------- independent O(eta) coefficient
def moment_flow(y, gamma0, t, z0=(0.0, 1.0, 1.0)):
    """Gradient flow of z = (a, H, G) and its first-order GD error coefficient E (docstring)."""
    g = float(gamma0)

    def rhs(_t, s):
        a, H, G = s[:3]
        E = s[3:]
        D = y - a / g
        F = np.array([g * D * (H + G), 2 * g * D * a, 2 * g * D * a])
        DF = np.array([[-(H + G), g * D, g * D],
                       [2 * g * D - 2 * a, 0.0, 0.0],
                       [2 * g * D - 2 * a, 0.0, 0.0]])
        Q = g * g * D * D * np.array([a, G, H])
        return np.concatenate([F, DF @ E + Q - 0.5 * DF @ F])

    t = np.asarray(t, float)
    sol = solve_ivp(rhs, (0.0, float(t[-1])), list(z0) + [0.0, 0.0, 0.0], t_eval=t,
                    method="DOP853", rtol=1e-12, atol=1e-14)
    assert sol.success
    a, H, G, Ea, EH, EG = sol.y
    return {"f": a / g, "K": H + G, "H": H, "G": G,
            "E_f": Ea / g, "E_K": EH + EG, "E_H": EH, "E_G": EG}


@lru_cache(maxsize=None)
def _moment_flow_with_variances(y, gamma0, t_key, step=1e-5):
    t = np.array(t_key)
    base = moment_flow(y, gamma0, t)
    grads = {k: [] for k in base}
    for i in range(3):
        zp = np.array([0.0, 1.0, 1.0])
        zm = zp.copy()
        zp[i] += step
        zm[i] -= step
        p, m = moment_flow(y, gamma0, t, zp), moment_flow(y, gamma0, t, zm)
        for k in base:
            grads[k].append((p[k] - m[k]) / (2 * step))
    out = dict(base)
    for X in ("f", "K", "H", "G"):
        gX, gE = np.array(grads[X]), np.array(grads["E_" + X])
        out["V_" + X] = np.einsum("it,ij,jt->t", gX, SIGMA_Z, gX)
        out["E_V_" + X] = 2.0 * np.einsum("it,ij,jt->t", gX, SIGMA_Z, gE)
    return out


def moment_flow_with_variances(y, gamma0, t):
    """``moment_flow`` plus ``V_X`` = N Var X (gradient flow) and ``E_V_X`` its O(eta) coefficient."""
    return _moment_flow_with_variances(float(y), float(gamma0), tuple(np.asarray(t, float)))


def check_first_order(got, ref, coef, eta, got_half, ref_half, coef_half, eta_half, what):
    """Shared assertions for "discrete GD = gradient flow + eta * coef + O(eta^2)".

    (i) max error ratio between eta and eta/2 in [1.7, 2.3] (first order: 2);
    (ii) |error/eta - coef| <= 5 eta max|coef| at each eta. The remainder is the O(eta^2) term
    over eta; its coefficient is of the size of coef's (measured <= 2.7 eta max|coef| for every
    quantity here), so 5 eta leaves a ~2x margin, while a wrong leading term (a missing factor,
    Euler-stepped predictions, a dropped Q) fails by O(1);
    (iii) hence |error| <= C eta with C = max|coef| (1 + 5 eta), the justified constant.
    """
    err, err_half = got - ref, got_half - ref_half
    ratio = np.max(np.abs(err)) / np.max(np.abs(err_half))
    assert 1.7 <= ratio <= 2.3, f"{what}: error ratio eta -> eta/2 is {ratio:.3f}, expected ~2"
    for e, c, h in ((err, coef, eta), (err_half, coef_half, eta_half)):
        scale = np.max(np.abs(c))
        rem = np.max(np.abs(e / h - c))
        assert rem <= 5 * h * scale, (
            f"{what} (eta={h}): error/eta differs from the leading coefficient by {rem:.3g} "
            f"(max |coef| = {scale:.3g}; allowed 5 eta max|coef| = {5 * h * scale:.3g})")
        C = scale * (1 + 5 * h)
        assert np.max(np.abs(e)) <= C * h, f"{what}: |error| {np.max(np.abs(e)):.3g} > C eta = {C * h:.3g}"


# ----------------------------------------------------------------------- helper self-check
@pytest.mark.parametrize("gamma0", GAMMAS)
def test_moment_flow_reproduces_o1_to_o4(gamma0):
    """The independent O(eta)-coefficient helper reproduces the gradient-flow oracles.

    f and K against O1 (ODEs at rtol >= 1e-11: 1e-8), N Var f against O4 and N Var K, N Var H
    at T_LATE = 10 against the closed forms O2/O3: the finite-difference gradients dominate
    (~1e-7 relative, ~1e-11 absolute where N Var f has decayed to 1e-9): rtol 1e-6, atol 1e-8.
    """
    t = np.linspace(0.0, T_SHORT, 31)
    mf = moment_flow_with_variances(Y, gamma0, t)
    o1 = ode.o1_gradient_flow(Y, gamma0, t)
    np.testing.assert_allclose(mf["f"], o1.f, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(mf["K"], o1.K, rtol=1e-8)
    np.testing.assert_allclose(mf["V_f"], ode.o4_prediction_variance(Y, gamma0, t), rtol=1e-6,
                               atol=1e-8)
    late = moment_flow_with_variances(Y, gamma0, [0.0, T_LATE])
    v = ode.o2_o3_final_variances(Y, gamma0)
    H_inf, K_inf = ode.o1_final_kernels(Y, gamma0)
    assert late["K"][-1] == pytest.approx(K_inf, rel=1e-8)
    assert late["H"][-1] == pytest.approx(H_inf, rel=1e-8)
    assert late["V_K"][-1] == pytest.approx(v["N_var_K_inf"], rel=1e-6)
    assert late["V_H"][-1] == pytest.approx(v["N_var_H_inf"], rel=1e-6)


# ---------------------------------------------------------------------------------- O1
@pytest.mark.parametrize("gamma0", GAMMAS)
def test_o1_predictions_converge_to_gradient_flow_at_first_order(gamma0):
    """O1: infinite-width f(t) (and K(t)) of discrete GD vs the gradient-flow ODE, t in [0, 3].

    eta = 0.02 and 0.01 on the exact Gauss-Hermite rule. Tolerance: O(eta), see
    ``check_first_order`` (error halves with eta; error/eta equals the independently computed
    leading coefficient E(t) up to 5 eta max|E|; |error| <= max|E| (1 + 5 eta) eta). Also
    f(0) = 0 exactly (uncentred, E[u w0] = 0 is integrated exactly: 1e-14).
    """
    etas = (0.02, 0.01)
    runs = []
    for eta in etas:
        res = solve_linear(gamma0, eta, steps_for(T_SHORT, eta))
        mf = moment_flow_with_variances(Y, gamma0, res.t)
        o1 = ode.o1_gradient_flow(Y, gamma0, res.t)
        assert abs(res.f[0, 0]) < 1e-14
        # thin both grids to the common times t = 0, 0.02, ..., 3
        s = steps_for(0.02, eta)
        runs.append((res.f[::s, 0], o1.f[::s], mf["E_f"][::s],
                     res.ntk[::s, 0, 0], o1.K[::s], mf["E_K"][::s], eta))
    (f1, o1f, Ef1, K1, o1K, EK1, e1), (f2, o2f, Ef2, K2, o2K, EK2, e2) = runs
    check_first_order(f1, o1f, Ef1, e1, f2, o2f, Ef2, e2, "O1 f(t)")
    check_first_order(K1, o1K, EK1, e1, K2, o2K, EK2, e2, "O1 K(t)")


@pytest.mark.parametrize("gamma0", GAMMAS)
def test_o1_final_kernels(gamma0):
    """O1 end point: K(t=10) -> K_inf = 2 sqrt(1 + gamma0^2 y^2) and Phi1 -> H_inf = K_inf / 2.

    Discrete GD with eta = 0.04, 0.02: the late-time kernel differs from the gradient-flow end
    point by eta E_K(oo) + O(eta^2) (``check_first_order``). Richardson 2 K(eta/2) - K(eta)
    removes the O(eta) term: it must be closer to K_inf than K(eta/2) by a factor >= 5 (a pure
    O(eta^2) remainder shrinks the error by ~ 1/(c eta) >> 5 at eta = 0.02). Training has
    converged: |Delta(10)| < 1e-7 (rate >= K(0) = 2).
    """
    H_inf, K_inf = ode.o1_final_kernels(Y, gamma0)
    late = moment_flow_with_variances(Y, gamma0, [0.0, T_LATE])
    vals = {}
    for eta in (0.04, 0.02):
        res = solve_linear(gamma0, eta, steps_for(T_LATE, eta))
        assert abs(res.delta[-1, 0]) < 1e-7
        vals[eta] = (res.ntk[-1, 0, 0], res.kernels["Phi1"][-1, 0, 0])
    for i, (name, ref, E) in enumerate((("K_inf", K_inf, late["E_K"][-1]),
                                        ("H_inf", H_inf, late["E_H"][-1]))):
        a, b = vals[0.04][i], vals[0.02][i]
        check_first_order(np.array([a]), ref, np.array([E]), 0.04,
                          np.array([b]), ref, np.array([E]), 0.02, f"O1 {name}")
        rich = 2 * b - a
        assert abs(rich - ref) <= abs(b - ref) / 5, f"O1 {name}: Richardson {rich} vs {ref}"


# ------------------------------------------------------------------------------ O2 / O3
@pytest.mark.parametrize("gamma0", GAMMAS)
def test_o2_o3_final_kernel_variances(gamma0):
    """O2: N Var K_inf = 4 / (1 + gamma0^2 y^2); O3: N Var H_inf = 1 + 1 / (1 + gamma0^2 y^2).

    ``res.ntk_var`` and ``res.kernels_var['Phi1']`` at t = 10 (|Delta| < 1e-7) for eta = 0.04,
    0.02. Tolerance: O(eta) via ``check_first_order`` against the independently computed
    coefficient E_V(oo) = 2 grad K . Sigma . grad E_K (module docstring), and Richardson
    2 V(eta/2) - V(eta) at least 5x closer to the closed form than V(eta/2).
    (O2's bias N (E K_inf - K_inf) is not checked: ``Result`` exposes no O(1/N) mean correction.)
    """
    v = ode.o2_o3_final_variances(Y, gamma0)
    late = moment_flow_with_variances(Y, gamma0, [0.0, T_LATE])
    vals = {}
    for eta in (0.04, 0.02):
        res = solve_linear(gamma0, eta, steps_for(T_LATE, eta))
        vals[eta] = (res.ntk_var[-1, 0, 0], res.kernels_var["Phi1"][-1, 0, 0])
    for i, (name, ref, E) in enumerate((("N Var K_inf (O2)", v["N_var_K_inf"], late["E_V_K"][-1]),
                                        ("N Var H_inf (O3)", v["N_var_H_inf"], late["E_V_H"][-1]))):
        a, b = vals[0.04][i], vals[0.02][i]
        check_first_order(np.array([a]), ref, np.array([E]), 0.04,
                          np.array([b]), ref, np.array([E]), 0.02, name)
        rich = 2 * b - a
        assert abs(rich - ref) <= abs(b - ref) / 5, f"{name}: Richardson {rich} vs {ref}"


# ---------------------------------------------------------------------------------- O4
@pytest.mark.parametrize("gamma0", GAMMAS)
def test_o4_prediction_variance(gamma0):
    """O4: N Var f(t) = alpha^2 + 4 beta^2 (gradient flow ODE) vs ``res.f_var``, t in [0, 3].

    eta = 0.02, 0.01 on the exact rule. Tolerance: O(eta) via ``check_first_order`` with the
    independently computed coefficient E_V_f; at t = 0 the value is exact (O7: 1/gamma0^2, 1e-12).
    The N Var K(t), N Var H(t) paths are checked the same way (same derivation).
    """
    runs = []
    for eta in (0.02, 0.01):
        res = solve_linear(gamma0, eta, steps_for(T_SHORT, eta))
        assert res.f_var[0, 0] == pytest.approx(1 / gamma0 ** 2, rel=1e-12)
        mf = moment_flow_with_variances(Y, gamma0, res.t)
        s = steps_for(0.02, eta)
        runs.append(dict(eta=eta, f=res.f_var[::s, 0], o4=ode.o4_prediction_variance(Y, gamma0, res.t[::s]),
                         E=mf["E_V_f"][::s], K=res.ntk_var[::s, 0, 0], VK=mf["V_K"][::s],
                         EK=mf["E_V_K"][::s], H=res.kernels_var["Phi1"][::s, 0, 0],
                         VH=mf["V_H"][::s], EH=mf["E_V_H"][::s]))
    a, b = runs
    check_first_order(a["f"], a["o4"], a["E"], a["eta"], b["f"], b["o4"], b["E"], b["eta"], "O4 N Var f")
    check_first_order(a["K"], a["VK"], a["EK"], a["eta"], b["K"], b["VK"], b["EK"], b["eta"], "N Var K(t)")
    check_first_order(a["H"], a["VH"], a["EH"], a["eta"], b["H"], b["VH"], b["EH"], b["eta"], "N Var H(t)")


# ------------------------------------------------------------------- exact discrete oracle
EXACT_CASES = [  # (center, Kx, gamma0, y, eta, steps)
    (False, 1.0, 1.5, 1.3, 0.05, 40),
    (True, 1.0, 1.5, 1.3, 0.05, 40),
    (False, 0.6, 0.7, -0.9, 0.2, 25),
    (True, 0.6, 0.7, -0.9, 0.2, 25),
]


def _rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b))


@pytest.mark.parametrize("center,Kx,gamma0,y,eta,steps", EXACT_CASES)
def test_exact_discrete_fluctuations(center, Kx, gamma0, y, eta, steps):
    """The strongest check: every output at every time vs the exact finite-N delta method.

    ``exact.discrete_fluctuations`` reduces the linear P = 1 network to three sample means and
    differentiates the discrete-GD path by complex step (exact to rounding), at the SAME eta, so
    no O(eta) is involved; the theory's quadrature is exact (module docstring). Compared:
    f, N Cov f(t, s) (all t, s), K and N Var K(t), Phi1 and N Var Phi1(t), G1 and N Var G1(t)
    (G1 = (K - H) / Kx, its delta method done here with the oracle's ``delta_method``), for
    uncentred and centred nets, Kx != 1, large eta. Tolerance 1e-10 relative to the largest
    entry: rounding only (observed ~1e-15).
    """
    res = solve_linear(gamma0, eta, steps, y=y, Kx=Kx, center=center)
    o = exact.discrete_fluctuations(y, gamma0, eta, steps, Kx=Kx, center=center)
    N_cov_G, _, _ = exact.delta_method(
        lambda m: (lambda p: (p["K"] - p["H"]) / Kx)(
            exact.discrete_path(m, y, gamma0, eta, steps, Kx, center)))
    G_inf = (o["K"] - o["H"]) / Kx
    checks = [
        ("f", res.f[:, 0], o["f"]),
        ("f_cov", res.f_cov[:, 0, :, 0], o["N_cov_f"]),
        ("f_var", res.f_var[:, 0], np.diag(o["N_cov_f"])),
        ("K", res.ntk[:, 0, 0], o["K"]),
        ("ntk_var", res.ntk_var[:, 0, 0], np.diag(o["N_cov_K"])),
        ("Phi1", res.kernels["Phi1"][:, 0, 0], o["H"]),
        ("Phi1 var", res.kernels_var["Phi1"][:, 0, 0], np.diag(o["N_cov_H"])),
        ("G1", res.kernels["G1"][:, 0, 0], G_inf),
        ("G1 var", res.kernels_var["G1"][:, 0, 0], np.diag(N_cov_G)),
    ]
    for name, got, want in checks:
        assert _rel(got, want) < 1e-10, f"{name}: relative deviation {_rel(got, want):.3g}"
    # N Cov(Delta) = N Cov(f) (dDelta = -df), and it is symmetric
    np.testing.assert_allclose(res.f_cov[:, 0, :, 0], res.f_cov[:, 0, :, 0].T, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------- O5
def test_o5_lazy_delta_covariance():
    """O5, lazy centred net, P = 1, Kx = 1, discrete time (eta = 0.1, 30 steps):
    N Cov(Delta(k), Delta(j)) = kappa y^2 eta^2 k j (1 - eta lam)^(k+j-2), kappa = 4, lam = 2.

    N Cov Delta = N Cov f because dDelta = -df. The lazy formula is the gamma0 -> 0 limit; at
    gamma0 > 0 the kernel moves by O(gamma0^2) (K(t) - K(0) ~ gamma0^2 f^2), so the gap must be
    O(gamma0^2): gap(1e-2) / gap(1e-3) in [80, 120] (= 100 up to O(gamma0^2) corrections of the
    gap itself), and gap / max|cov| <= gamma0^2 (measured 0.25 gamma0^2). At the same gamma0
    the exact discrete oracle (no lazy approximation) agrees to 1e-9 relative (rounding; the
    oracle's complex-step Jacobian through 1/gamma0 is exact to ~1e-13 at gamma0 = 1e-3).
    """
    eta, steps = 0.1, 30
    k = np.arange(steps + 1)
    lazy = ode.o5_lazy_delta_cov_discrete(Y, ode.O5_LINEAR_KAPPA, ode.O5_LINEAR_LAMBDA, eta,
                                          k[:, None], k[None, :])
    gaps = {}
    for gamma0 in (1e-3, 1e-2):
        res = solve_linear(gamma0, eta, steps, center=True)
        cov = res.f_cov[:, 0, :, 0]
        gaps[gamma0] = _rel(cov, lazy)
        assert gaps[gamma0] <= gamma0 ** 2, f"gamma0={gamma0}: lazy gap {gaps[gamma0]:.3g}"
        o = exact.discrete_fluctuations(Y, gamma0, eta, steps, center=True)
        assert _rel(cov, o["N_cov_f"]) < 1e-9
        assert np.max(np.abs(cov[0])) < 1e-14   # centred: Delta(0) = y exactly
        # lazy kernel: K(t) = 2 up to O(gamma0^2), N Var K = kappa = 4 up to O(gamma0^2)
        np.testing.assert_allclose(res.ntk[:, 0, 0], 2.0, atol=10 * gamma0 ** 2)
        np.testing.assert_allclose(res.ntk_var[:, 0, 0], 4.0, atol=10 * gamma0 ** 2)
    ratio = gaps[1e-2] / gaps[1e-3]
    assert 80 <= ratio <= 120, f"lazy gap does not scale as gamma0^2: ratio {ratio:.2f}"


# ---------------------------------------------------------------------------------- O7
X_O7 = np.array([[1.0, 0.0], [0.6, 0.8], [0.8, -0.6]])   # Kx diagonal 0.5, D = 2
Y_O7 = np.array([0.8, -0.5])
GAMMA_O7 = 0.7          # != 1 so that a misplaced gamma0 shows
PHI = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}


def o7_data():
    return sd.Data(X_O7[:2], Y_O7, X_test=X_O7[2:])


def phi_moments(act, kxx, n=200):
    """<phi(u)^2>, <phi(u)^4> for u ~ N(0, kxx): one-dimensional Gauss-Hermite, 200 nodes
    (tanh: analytic in a strip, converged to rounding; relu: exact by the symmetry of the nodes,
    phi(z)^2 + phi(-z)^2 = z^2). Independent of symdmft."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / w.sum()
    v = PHI[act](np.sqrt(kxx) * x)
    return np.sum(w * v ** 2), np.sum(w * v ** 4)


@lru_cache(maxsize=None)
def solve_o7(act, sampler, samples):
    net = sd.mlp(hidden_layers=1, activation=act, gamma0=GAMMA_O7)
    # relu: allow_kinks, since O7 is a t = 0 statement, where the pathwise propagator is exact
    return sd.solve(net, o7_data(), sd.TimeGrid(0.1, 2), samples=samples, seed=0, sampler=sampler,
                    allow_kinks=True)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_o7_initial_prediction_covariance_on_gauss_hermite_rule(act):
    """O7: N Cov(f_mu(0), f_nu(0)) = Phi_{mu nu}(0,0) / gamma0^2 (uncentred), P = 2 + 1 test.

    (a) On a tensor Gauss-Hermite rule the identity holds exactly for the rule's own Phi: psi =
    w0 phi(h0) / gamma0 with w0 on its own, symmetric axis integrated exactly to degree 2
    (<w0> = 0, <w0^2> = 1), so gamma0^2 N Cov f(0) on train points == res.kernels['Phi1'][0] to
    rounding (1e-12).
    (b) For all points including the test point, gamma0^2 N Var f_mu(0) -> <phi(u)^2>,
    u ~ N(0, Kx_mu mu), the independent 1-D integral, as the rule is refined: relu is exact by
    symmetry on any symmetric rule (1e-12); tanh converges geometrically (analytic integrand),
    so from 8 to 12 nodes per axis the error must drop >= 5x and be < 1e-3 at 12 nodes
    (measured 8e-4 -> 7e-5 on the worst point).
    """
    data = o7_data()
    kxx = np.diag(data.Kx_all)
    ref = np.array([phi_moments(act, k)[0] for k in kxx])
    errs = []
    for nodes in (8, 12):
        res = solve_o7(act, "gauss-hermite", nodes ** 4)
        assert res.params["samples"] == nodes ** 4
        C0 = GAMMA_O7 ** 2 * res.f_cov[0, :, 0, :]
        np.testing.assert_allclose(C0[:2, :2], res.kernels["Phi1"][0], rtol=0, atol=1e-12)
        errs.append(np.abs(GAMMA_O7 ** 2 * res.f_var[0] - ref))
    if act == "relu":
        assert np.max(errs[1]) < 1e-12 and np.max(errs[0]) < 1e-12
    else:
        assert np.max(errs[1]) < 1e-3
        assert np.all(errs[1] <= errs[0] / 5 + 1e-12), f"GH not converging: {errs}"


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_o7_initial_prediction_variance_on_qmc_rule(act):
    """O7 on the default sampler (P_all + 1 = 4 > 3: scrambled Sobol, 4096 points).

    gamma0^2 N Var f_mu(0) is the rule's estimate of <w0^2 phi^2> - <w0 phi>^2, whose Monte
    Carlo standard error is sigma = sqrt((3 <phi^4> - <phi^2>^2) / n) (w0 independent,
    <w0^4> = 3). Scrambled Sobol is no worse than MC on these integrands; tolerance 4 sigma for
    every point including the test point, against the independent 1-D integral (measured errors
    are ~0.1 sigma). Train diagonal vs the rule's own Phi1: same bound.
    """
    data = o7_data()
    res = solve_o7(act, "auto", 4096)
    assert res.params["sampler"] == "qmc"
    n = res.params["samples"]
    for mu, kxx in enumerate(np.diag(data.Kx_all)):
        m2, m4 = phi_moments(act, kxx)
        sigma = np.sqrt((3 * m4 - m2 ** 2) / n)
        got = GAMMA_O7 ** 2 * res.f_var[0, mu]
        assert abs(got - m2) <= 4 * sigma, f"point {mu}: {got} vs {m2} (sigma {sigma:.2g})"
        if mu < data.P:
            assert abs(got - res.kernels["Phi1"][0, mu, mu]) <= 4 * sigma


# ------------------------------------------------------------------- naive symbolic blocks
@pytest.mark.parametrize("T", [2, 3])
@pytest.mark.parametrize("Kx,gamma0,eta,y", [(0.7, 1.3, 0.3, 1.1), (1.0, 0.5, 0.1, -0.8)])
def test_naive_symbolic_prediction_cov(T, Kx, gamma0, eta, y):
    """``naive_prediction_cov(T, values)`` = (I + D_f)^-1 kappa (I + D_f)^-T built by hand in SymPy
    (explicit site process, Gaussian moments, derivatives) vs ``sd.solve(...).f_cov`` on the same
    linear P = 1 problem (X = [[sqrt Kx]]), uncentred, and the saddle f = y - Delta.

    Both are exact (symbolic vs exact quadrature): 1e-10 relative (rounding, measured 1e-15).
    """
    values = dict(eta=eta, gamma0=gamma0, Kx=Kx, y=y)
    want = naive.naive_prediction_cov(T, values)
    res = solve_linear(gamma0, eta, T, y=y, Kx=Kx)
    assert _rel(res.f_cov[:, 0, :, 0], want) < 1e-10
    deltas = naive.naive_saddle_deltas(T, values)
    np.testing.assert_allclose(res.f[:, 0], y - deltas, rtol=0, atol=1e-12)
