"""Hand-derived oracles O1-O5 (THEORY.md section 4) for the two-layer LINEAR network.

Independent of symdmft: imports only numpy and scipy.

Setting: one hidden layer, phi(h) = h, one training point (P = 1) with x.x/D = Kx = 1,
target y, feature strength gamma0, mean-field parameterisation (THEORY.md section 1).

Derivation of O1 (gradient flow, infinite width)
------------------------------------------------
Per site (THEORY.md section 2, two-layer form, Kx = 1, phi' = 1) the gradient-flow limit of

    h(k+1) = h(k) + eta gamma0 w(k) Delta(k),    w(k+1) = w(k) + eta gamma0 Delta(k) h(k)

is ``dh/dt = gamma0 w Delta``, ``dw/dt = gamma0 h Delta`` with h(0) = u ~ N(0,1),
w(0) ~ N(0,1) independent. The order parameters are

    f = <w h> / gamma0,   H = Phi^1 = <h^2>,   G = <w^2>   (so G^1 = G, G^2 = 1)

and the NTK is ``K = G^1 Phi^0 + G^2 Phi^1 = G Kx + H = H + G``. Averaging the site ODEs:

    d<wh>/dt = gamma0 Delta (<h^2> + <w^2>)   =>  df/dt = (H + G) Delta = K Delta
    dH/dt = 2 gamma0 Delta <hw> = 2 gamma0^2 f Delta = dG/dt

Initially H = G = 1 and f = <u w0>/gamma0 = 0. Hence H - G = 0 for all t (H = G, K = 2H), and

    d(H^2 - gamma0^2 f^2)/dt = 2H (2 gamma0^2 f Delta) - 2 gamma0^2 f (2 H Delta) = 0

so ``H^2 - gamma0^2 f^2 = 1``: ``H = sqrt(1 + gamma0^2 f^2)``, ``K = 2 sqrt(1 + gamma0^2 f^2)`` and
``dDelta/dt = -K Delta = -2 sqrt(1 + gamma0^2 (y - Delta)^2) Delta`` (O1; note the factor 2
that 2205.09653 omits). As t -> oo, f -> y: ``H_inf = sqrt(1 + gamma0^2 y^2)``,
``K_inf = 2 H_inf``.

O5 discrete (lazy, centred, P = 1, static kernel K = lam + dK, dK = O(N^-1/2))
-----------------------------------------------------------------------------
``Delta(k+1) = (1 - eta K) Delta(k)``, Delta(0) = y  =>  ``Delta(k) = (1 - eta K)^k y``. To
first order in dK: ``dDelta(k) = -k eta dK (1 - eta lam)^(k-1) y``, so with
``kappa = N Var K``:

    N Cov(Delta(k), Delta(j)) = kappa y^2 eta^2 k j (1 - eta lam)^(k + j - 2)

which tends to ``kappa y^2 t s exp(-lam (t + s))`` as eta -> 0 at t = k eta, s = j eta.
For the linear net ``lam = Kbar = 2`` and ``kappa = Var_site(h^2 + w^2) = 2 + 2 = 4``.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from scipy.integrate import solve_ivp

__all__ = [
    "O1Result",
    "o1_gradient_flow",
    "o1_final_kernels",
    "o2_o3_final_variances",
    "o4_prediction_variance",
    "o5_lazy_delta_cov",
    "o5_lazy_delta_cov_discrete",
    "O5_LINEAR_KAPPA",
    "O5_LINEAR_LAMBDA",
]

RTOL = 1e-11
ATOL = 1e-13

#: N Var K(0) for the two-layer linear net with Kx = 1: Var(h^2 + w^2), h, w unit Gaussians.
O5_LINEAR_KAPPA = 4.0
#: Kbar = K(0) at infinite width for the two-layer linear net with Kx = 1.
O5_LINEAR_LAMBDA = 2.0

O1Result = namedtuple("O1Result", ["Delta", "f", "K"])


def _solve(rhs, y0, t):
    """Integrate ``rhs`` from 0 to the times ``t`` (scalar or array, any order, t >= 0).

    Returns an array of shape ``(len(y0),) + np.shape(t)``.
    """
    t_arr = np.asarray(t, dtype=float)
    flat = t_arr.ravel()
    if np.any(flat < 0):
        raise ValueError("times must be >= 0")
    out = np.empty((len(y0), flat.size))
    if flat.size == 0:
        return out.reshape((len(y0),) + t_arr.shape)
    uniq, inv = np.unique(flat, return_inverse=True)
    t_end = float(uniq[-1])
    if t_end == 0.0:
        vals = np.repeat(np.asarray(y0, float)[:, None], uniq.size, axis=1)
    else:
        sol = solve_ivp(rhs, (0.0, t_end), np.asarray(y0, float), method="DOP853",
                        t_eval=uniq, rtol=RTOL, atol=ATOL)
        if not sol.success:
            raise RuntimeError(sol.message)
        vals = sol.y
    out[:] = vals[:, inv]
    return out.reshape((len(y0),) + t_arr.shape)


def o1_gradient_flow(y, gamma0, t):
    """O1: infinite-width gradient flow of the two-layer linear net, P = 1, Kx = 1.

    Solves ``dDelta/dt = -2 sqrt(1 + gamma0^2 (y - Delta)^2) Delta``, ``Delta(0) = y``
    (solve_ivp DOP853, rtol 1e-11, atol 1e-13).

    Parameters: y, gamma0 floats; t scalar or array of times >= 0 (any order).
    Returns ``O1Result(Delta, f, K)`` (a namedtuple, unpacks as a 3-tuple), each with the
    shape of ``t``: the error signal, the prediction ``f = y - Delta`` and the NTK
    ``K = 2 sqrt(1 + gamma0^2 f^2)`` (= H + G with H = G = sqrt(1 + gamma0^2 f^2), see the
    module docstring for the derivation from the site process).
    """
    y = float(y)
    g2 = float(gamma0) ** 2

    def rhs(_t, z):
        d = z[0]
        return [-2.0 * np.sqrt(1.0 + g2 * (y - d) ** 2) * d]

    delta = _solve(rhs, [y], t)[0]
    f = y - delta
    K = 2.0 * np.sqrt(1.0 + g2 * f ** 2)
    return O1Result(delta, f, K)


def o1_final_kernels(y, gamma0):
    """O1 end point: returns ``(H_inf, K_inf)`` = ``(sqrt(1 + gamma0^2 y^2), 2 H_inf)``."""
    H = float(np.sqrt(1.0 + (gamma0 * y) ** 2))
    return H, 2.0 * H


def o2_o3_final_variances(y, gamma0):
    """O2 and O3: finite-width fluctuations of the final kernels (gradient flow, t -> oo).

    Returns a dict of floats, with ``S = 1 + gamma0^2 y^2``:

    * ``"N_var_K_inf"``  = N Var K_inf          = 4 / S
    * ``"N_var_H_inf"``  = N Var H_inf          = 1 + 1 / S
    * ``"N_bias_K_inf"`` = N (E K_inf - K_inf)  = -S^(-3/2)

    (Cross-checked in the self-check against the exact finite-N end-point map
    ``K_inf = sqrt(b^2 - 4 a^2 + 4 gamma0^2 y^2)`` of ``two_layer_linear_exact``.)
    """
    S = 1.0 + (gamma0 * y) ** 2
    return {
        "N_var_K_inf": 4.0 / S,
        "N_var_H_inf": 1.0 + 1.0 / S,
        "N_bias_K_inf": -S ** -1.5,
    }


def o4_prediction_variance(y, gamma0, t, return_components=False):
    """O4: ``N Var f(t)`` for the two-layer linear net, P = 1, Kx = 1, gradient flow, uncentred.

    ``N Var f = alpha^2 + 4 beta^2`` with

        alpha' = -Lam alpha,                 alpha(0) = 1 / gamma0
        beta'  = -Lam beta + 2 Delta / K,    beta(0)  = 0
        Lam    = K - 4 gamma0^2 f Delta / K

    where Delta, f, K are the infinite-width O1 values; integrated jointly with O1's ODE
    (DOP853, rtol 1e-11). ``t``: scalar or array of times >= 0. Returns an array shaped like
    ``t``; with ``return_components=True`` returns ``(N_var_f, alpha, beta)``.

    (alpha = d f / d a and beta = d f / d b, the sensitivities of the finite-N prediction to the
    sample means a = mean(u w0), b = mean(u^2 + w0^2), whose site variances are 1 and 4; see
    ``two_layer_linear_exact``.)
    """
    y = float(y)
    g = float(gamma0)
    g2 = g * g

    def rhs(_t, z):
        d, al, be = z
        f = y - d
        K = 2.0 * np.sqrt(1.0 + g2 * f * f)
        lam = K - 4.0 * g2 * f * d / K
        return [-K * d, -lam * al, -lam * be + 2.0 * d / K]

    _, al, be = _solve(rhs, [y, 1.0 / g, 0.0], t)
    nv = al ** 2 + 4.0 * be ** 2
    if return_components:
        return nv, al, be
    return nv


def o5_lazy_delta_cov(y, kappa, lam, t, s):
    """O5 (gradient flow, lazy, centred, P = 1): ``N Cov(Delta(t), Delta(s))``.

    Returns ``kappa y^2 t s exp(-lam (t + s))`` (numpy broadcasting over t, s). For the two-layer
    linear net use ``kappa = O5_LINEAR_KAPPA = 4``, ``lam = O5_LINEAR_LAMBDA = 2``.
    """
    t = np.asarray(t, float)
    s = np.asarray(s, float)
    return kappa * y ** 2 * t * s * np.exp(-lam * (t + s))


def o5_lazy_delta_cov_discrete(y, kappa, lam, eta, k, j):
    """O5 for discrete GD with step eta: ``N Cov(Delta(k), Delta(j))`` at integer steps k, j.

    Returns ``kappa y^2 eta^2 k j (1 - eta lam)^(k + j - 2)`` (broadcasting over k, j); exactly 0
    when k = 0 or j = 0 (Delta(0) = y is deterministic for a centred net). Derivation in the
    module docstring.
    """
    k = np.asarray(k, float)
    j = np.asarray(j, float)
    base = 1.0 - eta * lam
    # k = 0 or j = 0 -> 0; avoid 0 * base**(-1) issues by masking the exponent.
    expo = np.where((k > 0) & (j > 0), k + j - 2.0, 0.0)
    return kappa * y ** 2 * eta ** 2 * k * j * base ** expo
