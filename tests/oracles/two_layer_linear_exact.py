"""Exact finite-N reduction of the two-layer LINEAR network with P = 1 (oracle for O1-O5, and for
the prediction propagator at any number of steps). Independent of symdmft: numpy/scipy/sympy.

Why it is exact
---------------
With phi(h) = h and one input, every neuron i obeys the SAME linear map (THEORY.md section 2,
"at finite N these are exactly the per-neuron equations"). Write h = sqrt(Kx) ht, so that
ht(0) ~ N(0,1). One GD step is

    (ht, w)(k+1) = [[1, c_k], [c_k, 1]] (ht, w)(k),      c_k = eta gamma0 sqrt(Kx) Delta(k)

These matrices all commute (they are I + c sigma_x), so after k steps
``(ht, w)(k) = (A_k I + B_k sigma_x)(ht0, w0)`` with
``A_k + B_k = prod_{j<k} (1 + c_j)``, ``A_k - B_k = prod_{j<k} (1 - c_j)``. Every network-level
quantity is then a function of three sample means over the N neurons,

    a = mean(ht0 w0),   b = mean(ht0^2 + w0^2),   c = mean(ht0^2)

    f(k) = sqrt(Kx)/gamma0 [(A^2 + B^2) a + A B b]        (uncentred output)
    K(k) = Kx [(A^2 + B^2) b + 4 A B a]                    (NTK = G^1 Kx + Phi^1)
    H(k) = Kx [A^2 c + B^2 (b - c) + 2 A B a]              (Phi^1 = mean h^2)

and Delta(k) = y - f(k) (centred: y - f(k) + f(0)) closes the recursion: the finite-N network
is a deterministic function of m = (a, b, c). At infinite width m0 = (0, 2, 1); the per-neuron
summands have covariance ``SITE_COV`` (Var(ht w) = 1, Var(ht^2 + w^2) = 4, Var(ht^2) = 2,
Cov(ht^2 + w^2, ht^2) = 2, others 0), so sqrt(N)(m - m0) -> N(0, SITE_COV) and the delta method
gives the O(1/N) laws exactly:

    N Cov(X, Y) -> J_X SITE_COV J_Y^T,     N (E X - X_inf) -> 1/2 sum_ij d2X/dm_i dm_j SITE_COV_ij

Gradient flow: the step matrices become hyperbolic rotations, ``A = cosh tau``, ``B = sinh tau``
with ``dtau/dt = gamma0 sqrt(Kx) Delta``; then f = sqrt(Kx)/gamma0 (a cosh 2tau + b/2 sinh 2tau),
K = Kx (b cosh 2tau + 2 a sinh 2tau), H = Kx (c + b sinh^2 tau + a sinh 2tau). As t -> oo
(uncentred) f -> y, and eliminating tau gives the closed end point

    K_inf = Kx sqrt(b^2 - 4 a^2 + 4 gamma0^2 y^2 / Kx),    H_inf = (K_inf + Kx (2c - b)) / 2

(H - Kx mean(w^2) is conserved). ``exact_final_fluctuations`` applies the delta method to this
map symbolically, which reproduces O2/O3 independently of the printed formulas.
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

__all__ = ["SITE_COV", "M0", "sample_means", "discrete_path", "delta_method",
           "discrete_fluctuations", "gradient_flow_fluctuations", "exact_final_fluctuations"]

#: Covariance of the per-neuron summands of m = (a, b, c) (see module docstring).
SITE_COV = np.array([[1.0, 0.0, 0.0],
                     [0.0, 4.0, 2.0],
                     [0.0, 2.0, 2.0]])
#: Infinite-width values of m = (a, b, c).
M0 = np.array([0.0, 2.0, 1.0])


def sample_means(h0, w0, Kx=1.0):
    """m = (a, b, c) from the initial hidden preactivations h0 (variance Kx) and readouts w0."""
    ht = np.asarray(h0, float) / np.sqrt(Kx)
    w0 = np.asarray(w0, float)
    return np.array([np.mean(ht * w0), np.mean(ht ** 2 + w0 ** 2), np.mean(ht ** 2)])


def discrete_path(m, y, gamma0, eta, T, Kx=1.0, center=False):
    """Exact finite-N discrete-GD path for sample means ``m = (a, b, c)`` (may be complex).

    Returns dict of arrays of length T+1 (steps 0..T): ``f`` (the network output, centred if
    ``center``), ``Delta`` (= y - f), ``K`` (NTK), ``H`` (Phi^1).
    """
    a, b, c = m
    sK = np.sqrt(Kx)
    pp = pm = 1.0          # prod (1 + c_j), prod (1 - c_j)
    f0 = sK * a / gamma0
    out = {k: [] for k in ("f", "Delta", "K", "H")}
    for k in range(T + 1):
        A = (pp + pm) / 2
        B = (pp - pm) / 2
        f = sK / gamma0 * ((A * A + B * B) * a + A * B * b)
        if center:
            f = f - f0
        d = y - f
        out["f"].append(f)
        out["Delta"].append(d)
        out["K"].append(Kx * ((A * A + B * B) * b + 4 * A * B * a))
        out["H"].append(Kx * (A * A * c + B * B * (b - c) + 2 * A * B * a))
        ck = eta * gamma0 * sK * d
        pp = pp * (1 + ck)
        pm = pm * (1 - ck)
    return {k: np.array(v) for k, v in out.items()}


def delta_method(fun, m0=M0, cov=SITE_COV, hess_step=1e-5):
    """Leading-order N Cov and N bias of the outputs of ``fun(m) -> 1D array``.

    Jacobian by complex step (step 1e-30: exact to rounding; ``fun`` must be analytic, i.e.
    built from + - * / only). Hessian by central differences of complex-step Jacobians with
    step ``hess_step`` (truncation ~ step^2, rounding ~ 1e-16/step: ~1e-10 relative).
    Returns ``(N_cov, N_bias, J)`` with shapes (n, n), (n,), (n, 3).
    """
    m0 = np.asarray(m0, float)

    def jac(m):
        cols = []
        for i in range(len(m)):
            mc = m.astype(complex)
            mc[i] += 1e-30j
            cols.append(np.imag(np.asarray(fun(mc))) / 1e-30)
        return np.stack(cols, axis=-1)

    J = jac(m0)
    n = J.shape[0]
    hess = np.zeros((n, len(m0), len(m0)))
    for j in range(len(m0)):
        e = np.zeros(len(m0))
        e[j] = hess_step
        hess[:, :, j] = (jac(m0 + e) - jac(m0 - e)) / (2 * hess_step)
    hess = 0.5 * (hess + hess.transpose(0, 2, 1))
    N_cov = J @ cov @ J.T
    N_bias = 0.5 * np.einsum("kij,ij->k", hess, cov)
    return N_cov, N_bias, J


def discrete_fluctuations(y, gamma0, eta, T, Kx=1.0, center=False):
    """Delta-method O(1/N) laws for discrete GD, steps 0..T.

    Returns dict with the infinite-width paths ``f``, ``Delta``, ``K``, ``H`` (length T+1) and
    ``N_cov_f``, ``N_cov_K``, ``N_cov_H`` ((T+1, T+1): N Cov over steps) and ``N_bias_f``,
    ``N_bias_K``, ``N_bias_H`` (length T+1: N (E X - X_inf)). N Cov(Delta) = N_cov_f.
    """
    out = discrete_path(M0, y, gamma0, eta, T, Kx, center)
    for name in ("f", "K", "H"):
        cov, bias, _ = delta_method(
            lambda m, name=name: discrete_path(m, y, gamma0, eta, T, Kx, center)[name])
        out[f"N_cov_{name}"] = cov
        out[f"N_bias_{name}"] = bias
    return out


def gradient_flow_fluctuations(y, gamma0, t, Kx=1.0, center=False):
    """Leading-order N Cov of f, K, H in gradient flow via the exact tau reduction.

    First-order sensitivities s_a = dtau/da, s_b = dtau/db (dtau/dc = 0) are integrated jointly
    with tau (DOP853, rtol 1e-12) at m0 = (0, 2, 1). ``t``: 1D array of increasing times >= 0.
    Returns dict with ``f``, ``K``, ``H`` (infinite width), ``J_f``, ``J_K``, ``J_H`` (shape
    (len(t), 3): d/dm), ``N_var_f``, ``N_var_K``, ``N_var_H`` (len(t)) and ``N_cov_f``,
    ``N_cov_K``, ``N_cov_H`` ((len(t), len(t))).
    """
    t = np.atleast_1d(np.asarray(t, float))
    a, b, c = M0
    sK = np.sqrt(Kx)
    cen = 1.0 if center else 0.0

    def rhs(_t, z):
        tau, sa, sb = z
        C, S = np.cosh(2 * tau), np.sinh(2 * tau)
        R = 2 * a * S + b * C
        dtau = gamma0 * sK * y - Kx * (a * C + b * S / 2) + cen * Kx * a
        return [dtau, -Kx * (C + R * sa) + cen * Kx, -Kx * (S / 2 + R * sb)]

    if t[-1] > 0:
        sol = solve_ivp(rhs, (0.0, t[-1]), [0.0, 0.0, 0.0], method="DOP853", t_eval=t,
                        rtol=1e-12, atol=1e-14)
        tau, sa, sb = sol.y
    else:
        tau = sa = sb = np.zeros_like(t)
    C, S, sh2 = np.cosh(2 * tau), np.sinh(2 * tau), np.sinh(tau) ** 2
    R = 2 * a * S + b * C
    zero = np.zeros_like(t)
    out = {
        "f": sK / gamma0 * (a * C + b * S / 2 - cen * a),
        "K": Kx * (b * C + 2 * a * S),
        "H": Kx * (c + b * sh2 + a * S),
        "J_f": np.stack([sK / gamma0 * (C + R * sa - cen), sK / gamma0 * (S / 2 + R * sb),
                         zero], axis=-1),
        "J_K": np.stack([Kx * (2 * S + (2 * b * S + 4 * a * C) * sa),
                         Kx * (C + (2 * b * S + 4 * a * C) * sb), zero], axis=-1),
        "J_H": np.stack([Kx * (S + (b * S + 2 * a * C) * sa),
                         Kx * (sh2 + (b * S + 2 * a * C) * sb), Kx + zero], axis=-1),
    }
    for name in ("f", "K", "H"):
        J = out[f"J_{name}"]
        out[f"N_cov_{name}"] = J @ SITE_COV @ J.T
        out[f"N_var_{name}"] = np.einsum("ti,ij,tj->t", J, SITE_COV, J)
    return out


def exact_final_fluctuations(y=None, gamma0=None):
    """Symbolic delta method on the exact end-point map (gradient flow, t -> oo, Kx = 1).

    ``K_inf(m) = sqrt(b^2 - 4a^2 + 4 gamma0^2 y^2)``, ``H_inf(m) = (K_inf + 2c - b)/2``.
    With y, gamma0 None, uses positive symbols ``y``, ``gamma0``; otherwise substitutes them.
    Returns dict of sympy expressions ``N_var_K_inf``, ``N_var_H_inf``, ``N_bias_K_inf``,
    ``N_bias_H_inf`` (simplified).
    """
    ys, gs = sp.symbols("y gamma0", positive=True)
    a, b, c = sp.symbols("a b c", real=True)
    m = [a, b, c]
    Kinf = sp.sqrt(b ** 2 - 4 * a ** 2 + 4 * gs ** 2 * ys ** 2)
    Hinf = (Kinf + 2 * c - b) / 2
    cov = sp.Matrix(SITE_COV.astype(int).tolist())
    at0 = {a: 0, b: 2, c: 1}
    res = {}
    for name, X in (("K", Kinf), ("H", Hinf)):
        J = sp.Matrix([[sp.diff(X, v) for v in m]]).subs(at0)
        Hs = sp.hessian(X, m).subs(at0)
        res[f"N_var_{name}_inf"] = sp.simplify((J * cov * J.T)[0, 0])
        res[f"N_bias_{name}_inf"] = sp.simplify(
            sp.Rational(1, 2) * sum(Hs[i, j] * cov[i, j] for i in range(3) for j in range(3)))
    if y is not None or gamma0 is not None:
        rep = {}
        if y is not None:
            rep[ys] = y
        if gamma0 is not None:
            rep[gs] = gamma0
        res = {k: sp.simplify(v.subs(rep)) for k, v in res.items()}
    return res
