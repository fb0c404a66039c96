"""Finite-width fluctuations of deep nets, any smooth activation: the dense propagator (THEORY.md §3).

The action of a deep net (order parameters v = Phi^l, G^l, A^l, B^l, f; conjugates w of the
kernels and of f) is

    S = w . x - gamma0^2 sum_l tr(A^l B^l) + sum_l ln Z_l(w_l; X_l, Y_l, C_l, E_l)

with layer l's site driven by X_l = Phi^{l-1}, Y_l = G^{l+1} and the memories
C_l = A^{l-1} + eta Theta Delta Phi^{l-1}, E_l = B^l + eta Theta Delta G^{l+1} (THEORY.md §2).
``deep.site_action`` gives the Hessian of each ln Z_l over (w_l, X_l, Y_l, C_l, E_l) as site
averages (the anti-causal memory entries carry the response fluctuations); the chain rule
through the linear map v -> (X_l, Y_l, C_l, E_l) (the bilinear Phi o W(f) terms add nothing
at the saddle: their support is causal, where d ln Z_l = 0) assembles the full Hessian H, and

    N Cov(v) = -(H^{-1})_{vv}

evaluated for the chosen observables only (predictions at every step and point, equal-time
kernels and the NTK on training points). For a linear activation this is the action of
``deep.linear_action`` (the site averages are then Gaussian and exact with a Gauss-Hermite
rule); for L = 1 it is the two-layer propagator of ``sd.solve``. Dense on purpose: H has about
(4L - 1) ((steps+1) P_all)^2 + 2L ((steps+1) P_all)^2 rows; ``deep.nonlinear_matrix_free`` gives
the same numbers without it, per chosen observable (docs/deep_fluctuations.md).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..runtime.samplers import make_rule
from .linear_tangents import _Layout, saddle_geometry
from .rich_result import RichResult
from .site_action import layer_hessian


def layer_pullback(l, L, lay: _Layout, Phi, G, W, lower, train, eta) -> np.ndarray:
    """(4 n^2, size): the linear map dv -> d(X_l, Y_l, C_l, E_l) at the saddle.

    X_l = Phi^{l-1}, Y_l = G^{l+1}, dC_l = dA^{l-1} + W o dPhi^{l-1} + dW o Phi^{l-1},
    dE_l = dB^l + W o dG^{l+1} + dW o G^{l+1}, dW[i, j] = -eta lower[i, j] df_j (training j).
    """
    n, nn = lay.n, lay.n ** 2
    Pm = np.zeros((4 * nn, lay.size))
    X, Y, C, E = (Pm[i * nn:(i + 1) * nn] for i in range(4))
    col = lambda name: np.arange(lay.size)[lay.slices[name]]  # noqa: E731
    entry = np.arange(nn)
    if l > 1:
        X[entry, col(f"Phi{l - 1}")] = 1.0
        C[entry, col(f"A{l - 1}")] = 1.0
        C[entry, col(f"Phi{l - 1}")] += W.reshape(-1)
    if l < L:
        Y[entry, col(f"G{l + 1}")] = 1.0
        E[entry, col(f"B{l}")] = 1.0
        E[entry, col(f"G{l + 1}")] += W.reshape(-1)
    dW = -eta * lower * train[None, :]                        # coefficient of df_j in W[i, j]
    f_of_entry = col("f")[entry % n]
    C[entry, f_of_entry] += (dW * Phi[l - 1]).reshape(-1)
    E[entry, f_of_entry] += (dW * G[l]).reshape(-1)
    return Pm


def observable_rows(res: RichResult, lay: _Layout, R=None) -> dict:
    """Rows over v of the observables: f (all steps and points), equal-time kernels and the NTK
    on training points. ``R`` maps noise to v (``(I - D)^{-1}``); None selects v itself."""
    L, T1, Pa, P = res.L, res.t.size, res.f.shape[1], res.P
    n = lay.n
    R = np.eye(lay.size) if R is None else R
    diag_idx = [(t * Pa + a) * n + t * Pa + b for t in range(T1) for a in range(P) for b in range(P)]
    rows = {"f": R[lay.slices["f"]]}
    for name, s in lay.slices.items():
        if name[0] in "PG":
            rows[name] = R[s][diag_idx]
    # dK(t) = sum_l dG^{l+1} Phi^l + G^{l+1} dPhi^l (G^{L+1} = 1, Phi^0 = Kx fixed)
    eq = {k: v.reshape(T1, P, P).reshape(-1) for k, v in res.kernels.items()}
    Kx = np.tile(res.Kx[:P, :P].reshape(-1), T1)
    rows["K"] = rows[f"Phi{L}"] + Kx[:, None] * rows["G1"]
    for l in range(1, L):
        rows["K"] = rows["K"] + eq[f"G{l + 1}"][:, None] * rows[f"Phi{l}"] + eq[f"Phi{l}"][:, None] * rows[f"G{l + 1}"]
    return rows


def fill_fluctuations(res: RichResult, rows: dict, cov) -> RichResult:
    """res.f_cov and res.kernels_var from observable rows and a map O -> N Cov(O v)."""
    T1, Pa, P = res.t.size, res.f.shape[1], res.P
    names = list(rows)
    O = np.concatenate([rows[k] for k in names])
    full = cov(O)
    out, start = {}, 0
    for k in names:
        m = rows[k].shape[0]
        out[k] = full[start:start + m, start:start + m]
        start += m
    res.f_cov = out.pop("f").reshape(T1, Pa, T1, Pa)
    res.kernels_var = {k: np.diag(v).reshape(T1, P, P) for k, v in out.items()}
    return res


def action_hessian(net, res: RichResult, grid, P: int, make_rule_for, jacobian=True,
                   layer_options=None, cache=None) -> tuple:
    """The full Hessian H over (v, w) and the layout (module docstring). ``layer_options``:
    more keyword arguments of ``site_action.layer_hessian`` (root, sort); ``cache``: a dict
    in which layer Hessians are kept by their inputs, reused when a layer's (X, Y, C, E)
    recur (the mean correction's shifted points change one or two layers each)."""
    L, T1, Pa = res.L, res.t.size, res.f.shape[1]
    n, g0, eta = T1 * Pa, net.gamma0, grid.eta
    lay = _Layout(L, n)
    Phi, G, A, B, W, lower, train = saddle_geometry(res, eta, P)
    tt = np.repeat(np.arange(T1), Pa)
    strict, weak = tt[:, None] > tt[None, :], tt[:, None] >= tt[None, :]
    phis = net.numpy_derivatives(4)
    nn, m_x = n * n, 2 * L * n * n + n
    x_slices = [lay.slices[f"Phi{l}"] for l in range(1, L + 1)] + [lay.slices[f"G{l}"] for l in range(1, L + 1)] + [lay.slices["f"]]
    w_start = {}
    pos = lay.size
    for s in x_slices:
        w_start[s.start] = pos
        pos += s.stop - s.start
    H = np.zeros((lay.size + m_x, lay.size + m_x))
    for l in range(1, L + 1):
        X, Y = Phi[l - 1], G[l]
        C = ((A[l - 2] if l > 1 else 0.0) + X * W) * strict
        E = ((B[l - 1] if l < L else 0.0) + Y * W) * weak
        price = ("u",) * (l > 1) + ("r",) * (l < L)          # X_l, Y_l that are order parameters
        key = (l, X.tobytes(), Y.tobytes(), C.tobytes(), E.tobytes())
        if cache is not None and key in cache:
            Hl = cache[key]
        else:
            Hl = layer_hessian(phis, g0, X, Y, C, E, Pa, lambda dim: make_rule_for(l, dim),
                               center=net.center and l == L, price=price, jacobian=jacobian,
                               **(layer_options or {}))
            if cache is not None:
                cache[key] = Hl
        Pm = layer_pullback(l, L, lay, Phi, G, W, lower, train, eta)
        m = 2 * nn + n
        Hww, Hwt, Htt = Hl[:m, :m], Hl[:m, m:], Hl[m:, m:]
        H[:lay.size, :lay.size] += Pm.T @ Htt @ Pm
        own = [(0, lay.slices[f"Phi{l}"]), (nn, lay.slices[f"G{l}"])] + ([(2 * nn, lay.slices["f"])] if l == L else [])
        for off, sl in own:
            k = sl.stop - sl.start
            wr = w_start[sl.start] + np.arange(k)
            H[wr, np.arange(lay.size)[sl]] += 1.0                    # d2(w . x)/dw dx
            H[wr, :lay.size] += Hwt[off:off + k] @ Pm
            for off2, sl2 in own:
                k2 = sl2.stop - sl2.start
                H[np.ix_(wr, w_start[sl2.start] + np.arange(k2))] = Hww[off:off + k, off2:off2 + k2]
    g2 = g0**2
    idx = np.arange(nn).reshape(n, n)
    for l in range(1, L):                                             # -gamma0^2 tr(A^l B^l)
        a = np.arange(lay.size)[lay.slices[f"A{l}"]]
        b = np.arange(lay.size)[lay.slices[f"B{l}"]][idx.T.reshape(-1)]
        H[a, b] += -g2
        H[b, a] += -g2
    v, w = slice(0, lay.size), slice(lay.size, None)
    H[v, w] = H[w, v].T
    return H, lay


def solve_deep_propagator(net, data, grid, saddle: RichResult, samples: int = 2**14, seed: int = 0,
                          sampler: str = "qmc", rule=None, responses_noise: bool = True) -> RichResult:
    """A copy of ``saddle`` (a RichResult of ``net`` on ``data``, ``grid``) with N Cov f and N Var of
    the equal-time kernels and the NTK, leading order in 1/N (THEORY.md §3); ``saddle`` itself
    is left as it was.

    Site averages use ``samples`` points per layer of ``sampler`` (``rule(l, dim)`` overrides,
    e.g. an exact Gauss-Hermite rule for linear sites). ``responses_noise=False`` drops the
    sites' MSR Jacobian, with it the fluctuations of A and B: an ablation, badly wrong.
    """
    check_inputs(net, data, grid, saddle, samples, seed, sampler)
    make_rule_for = rule or (lambda l, dim: make_rule(dim, samples, seed + 7919 * l, sampler))
    H, lay = action_hessian(net, saddle, grid, data.P, make_rule_for, jacobian=responses_noise)
    rows = observable_rows(saddle, lay)

    def cov(O):
        rhs = np.zeros((H.shape[0], O.shape[0]))
        rhs[:lay.size] = O.T
        return -O @ np.linalg.solve(H, rhs)[:lay.size]
    res = dataclasses.replace(saddle, params={**saddle.params, "propagator": "dense deep action -(H^-1)_vv, "
                                              "site averages (deep.site_action)",
                                              "propagator_samples": samples, "responses_noise": responses_noise})
    return fill_fluctuations(res, rows, cov)


def check_inputs(net, data, grid, saddle, samples, seed, sampler):
    """Clear errors, before any site is sampled, for inputs the propagator cannot take."""
    from ..arch.activations import refuse_kink
    from ..arch.mlp import MLP
    from ..problem import Data, TimeGrid
    from ..runtime.samplers import check_sampling
    for name, value, kind in (("net", net, MLP), ("data", data, Data), ("grid", grid, TimeGrid),
                              ("saddle", saddle, RichResult)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a symdmft {kind.__name__}, got {type(value).__name__}")
    if saddle.L != net.hidden_layers or saddle.f.shape != (grid.steps + 1, data.P_all):
        raise ValueError(f"saddle must be the infinite-width solution of this problem: it has "
                         f"L = {saddle.L} and f of shape {saddle.f.shape}, the problem L = "
                         f"{net.hidden_layers} and ({grid.steps + 1}, {data.P_all})")
    refuse_kink(net.activation, net.activation_name, "the deep propagator",
                "its site jets need the second to fourth derivatives of phi as functions")
    check_sampling(samples, seed, sampler)
