"""``sd.lazy_solve``: predictions of a lazy deep network and their N Cov (THEORY.md §3, O5).

In the lazy limit (gamma0 -> 0, ``center=True``) the NTK stays at its random initial
value ``K = Kbar + dK / sqrt(N)``, ``N Cov(dK)`` from ``initial_statistics`` over train and
test points, and the centred outputs (f(0) = 0, Delta(0) = y) follow

    discrete GD:    Delta(k+1) = (I - eta K_tt) Delta(k),   f_s(k+1) = f_s(k) + eta K_st Delta(k)
    gradient flow:  dDelta/dt = -K_tt Delta,                df_s/dt = K_st Delta

(t: train, s: any point). At first order in dK, with ``Kbar_tt = V diag(lambda) V^T``,
``y~ = V^T y``, ``dK~ = V^T dK_tt V``:

    dDelta(k+1) = (I - eta Kbar) dDelta(k) - eta dK Deltabar(k),  dDelta(0) = 0
    =>  dDelta~_m(k) = sum_l Q_k[m, l] dK~_ml y~_l,
        GD:   Q_k[m, l] = (a_m^k - a_l^k) / (lambda_m - lambda_l),  a = 1 - eta lambda
              (-> -eta k a^(k-1) for equal eigenvalues; computed by Q_{k+1} = a_m Q_k - eta a_l^k)
        flow: Q_t[m, l] = (e^{-lambda_m t} - e^{-lambda_l t}) / (lambda_m - lambda_l)
              (-> -t e^{-lambda t}, THEORY.md §3; evaluated with exprel, no cancellation)

and on any point ``df_s(k) = sum_b dK_sb U_b(k) + (K_st V R_k o dK~) y~`` with the integrated
error ``U(k) = eta sum_{j<k} Deltabar(j)`` and ``R_k = eta sum_{j<k} Q_j`` (flow: integrals).
Training rows have ``df = -dDelta``. Every df(k) is a linear image ``T_k vec(dK[:, :P])``, so

    N Cov(f_mu(k), f_nu(j)) = T_k N Cov(dK) T_j^T,

the prediction covariance depends on the architecture only through Kbar and N Cov(K).
"""
from __future__ import annotations

import numpy as np
from scipy.special import exprel, gammainc, gamma as gamma_fn

from ..arch.mlp import MLP
from ..observables.result import Result
from ..problem import Data, TimeGrid
from .statistics import initial_statistics


def _gd_factors(lam, y_t, eta, steps):
    """Deltabar~ (T, P), U~ (T, P), Q and R (T, P, P) for discrete GD, by exact recursions."""
    a = 1.0 - eta * lam
    T, P = steps + 1, lam.size
    dec, U = np.empty((T, P)), np.zeros((T, P))
    Q, R = np.zeros((T, P, P)), np.zeros((T, P, P))
    dec[0] = 1.0
    for k in range(steps):
        dec[k + 1] = a * dec[k]
        U[k + 1] = U[k] + eta * dec[k]
        Q[k + 1] = a[:, None] * Q[k] - eta * dec[k][None, :]
        R[k + 1] = R[k] + eta * Q[k]
    return dec * y_t, U * y_t, Q, R


def _integral_moment(n, x):
    """I_n(x) = int_0^1 u^n e^{-x u} du: series for x <= 1, incomplete gamma above."""
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    small = x <= 1.0
    xs = x[small]
    term, total = np.ones_like(xs), np.zeros_like(xs)
    for j in range(40):
        total += term / (n + j + 1)
        term = term * (-xs) / (j + 1)
    out[small] = total
    xl = x[~small]
    out[~small] = gammainc(n + 1, xl) * gamma_fn(n + 1) / xl ** (n + 1)
    return out


def _flow_factors(lam, y_t, t):
    """As ``_gd_factors`` for gradient flow at times t, by divided differences of exponentials."""
    tt = t[:, None, None]
    lo = np.minimum(lam[:, None], lam[None, :])[None]
    gap = np.abs(lam[:, None] - lam[None, :])[None]
    Q = -tt * np.exp(-lo * tt) * exprel(-gap * tt)
    U1 = t[:, None] * exprel(-lam[None, :] * t[:, None])          # (1 - e^{-lam t}) / lam
    # R = int_0^t Q = (U1_m - U1_l) / (lam_m - lam_l): direct where the gap is resolved,
    # else the Taylor series about the midpoint (U1' = -t^2 I_1, U1''' = -t^4 I_3).
    diff = lam[:, None] - lam[None, :]
    mid = (lam[:, None] + lam[None, :])[None] / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = (U1[:, :, None] - U1[:, None, :]) / diff[None]
    taylor = (-tt**2 * _integral_moment(1, mid * tt)
              - tt**4 * _integral_moment(3, mid * tt) * diff[None] ** 2 / 24)
    R = np.where(np.abs(diff[None]) * tt > 1e-3, direct, taylor)
    dec = np.exp(-lam[None, :] * t[:, None])
    return dec * y_t, U1 * y_t, Q, R


def lazy_response(K: np.ndarray, y: np.ndarray, grid: TimeGrid, flow: bool = False):
    """Lazy predictions for a static NTK and their first-order response to the NTK.

    K: (P_all, P_all) kernel over train then test points, y: (P,) training targets.
    Returns f (steps+1, P_all) and T (steps+1, P_all, P_all, P) with
    ``df_mu(k) = sum_ab T[k, mu, a, b] dK_ab`` (a any point, b a training point).
    """
    P, Pa = y.size, K.shape[0]
    lam, V = np.linalg.eigh(K[:P, :P])
    y_t = V.T @ y
    if flow:
        Dt, Ut, Q, R = _flow_factors(lam, y_t, grid.t)
    else:
        Dt, Ut, Q, R = _gd_factors(lam, y_t, grid.eta, grid.steps)
    n_t = grid.steps + 1
    f = np.empty((n_t, Pa))
    f[:, :P] = y[None, :] - Dt @ V.T
    KV = K[:, :P] @ V
    f[:, P:] = Ut @ KV[P:].T
    T = np.zeros((n_t, Pa, Pa, P))
    T[:, :P, :P, :] = -np.einsum("um,am,kml,bl,l->kuab", V, V, Q, V, y_t)     # df = -dDelta
    T[:, P:, :P, :] = np.einsum("sm,am,kml,bl,l->ksab", KV[P:], V, R, V, y_t)
    T[:, np.arange(P, Pa), np.arange(P, Pa), :] += (Ut @ V.T)[:, None, :]
    return f, T


def lazy_solve(net: MLP, data: Data, grid: TimeGrid, flow: bool = False, stats=None) -> Result:
    """Lazy-limit predictions and their leading-order N Cov on train and test points.

    ``flow=False``: discrete GD exactly as ``sd.simulate`` trains (THEORY.md §1, gamma0 -> 0);
    ``flow=True``: gradient flow at the grid's times. ``stats``: a precomputed
    ``initial_statistics(net, data)`` over all points. Returns a ``Result`` with f,
    f_cov (steps+1, P_all, steps+1, P_all), and the static kernels (ntk constant in time)
    with their N Var on the training points.
    """
    if not net.center:
        raise ValueError("the lazy limit needs a centred network (sd.mlp(..., center=True)): "
                         "otherwise N Var f(0) = Phi^L / gamma0^2 diverges as gamma0 -> 0")
    if not isinstance(grid, TimeGrid):
        raise TypeError(f"grid must be a symdmft TimeGrid, got {type(grid).__name__}")
    stats = stats if stats is not None else initial_statistics(net, data, points="all")
    P, Pa = data.P, data.P_all
    if stats.P != Pa:
        raise ValueError(f"stats cover {stats.P} points, the data have {Pa} (use points='all')")
    f, T = lazy_response(stats.means["K"], data.y, grid, flow)
    n_t = grid.steps + 1
    cov_K = stats.cov("K")[:, :P][:, :, :, :P].reshape(Pa * P, Pa * P)
    Tm = T.reshape(n_t * Pa, Pa * P)
    f_cov = (Tm @ cov_K @ Tm.T).reshape(n_t, Pa, n_t, Pa)

    kernels = {name: np.broadcast_to(m[:P, :P], (n_t, P, P)).copy() for name, m in stats.means.items()}
    kernels_var = {name: np.broadcast_to(v[:P, :P], (n_t, P, P)).copy() for name, v in stats.var.items()}
    params = {**net.describe(), **data.describe(), "eta": grid.eta, "steps": grid.steps,
              "method": "lazy-flow" if flow else "lazy-gd"}
    return Result(t=grid.t, f=f, f_cov=f_cov, kernels=kernels, kernels_var=kernels_var,
                  y=data.y.copy(), params=params, y_test=data.y_test)
