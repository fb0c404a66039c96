"""Finite-width fluctuations of deep linear networks: the dense propagator (THEORY.md §3).

Order parameters v = (Phi^l, G^l for l = 1..L; A^l, B^l for l = 1..L-1; f), each two-time
object a full ((steps+1) P_all)^2 matrix (every entry a variable, anti-causal ones included),
f over (steps+1) P_all. The saddle map q -> <psi>_q is the layer map of THEORY.md §2: layer
l's site sees Phi^{l-1}, G^{l+1}, A^{l-1}, B^l and Delta = y - f (training points) and
returns Phi^l, G^l, A^l = M C, B^{l-1} = N E and (l = L) f by the correlator rule.

* D = d<psi>/dq: exact forward-mode derivative of those matrix equations (``_layer_jvp``,
  batched over all coordinates; d(M) = gamma0^2 M (dC E + C dE) M).
* kappa: sites are Gaussian, so Isserlis gives Cov_site of h h^T, g g^T and g h / gamma0
  from the layer's <h h^T>, <g g^T>, <h g^T>; layers are independent (block-diagonal).
* The responses: the weight average couples A^l and B^l through -gamma0^2 tr(A^l B^l), and
  the anti-causal entries of B^l (of A^l) act as the conjugate field of A^l (of B^l). Their
  "noise" is the sensitivity of the site to anti-causal memory and the second derivative of
  the site's Jacobian determinant (``linear_action``). The propagator is -(H^{-1})_{vv} of the
  full Hessian H; equivalently (I - D')^{-1} kappa' (I - D')^{-T} once the anti-causal
  entries are read as conjugates. ``responses_noise=False`` drops them: the plain
  (I - D)^{-1} kappa (I - D)^{-T} over the physical psi only, an ablation that is badly wrong
  (final NTK variance 3-4x too large, L = 2, 3; 4% off sd.lazy_solve even as gamma0 -> 0;
  tests/test_deep_linear_propagator.py).

Dense on purpose: a small-problem reference (L = 2-3, P = 1-2, ~10 steps; the Hessian has
about (4L - 1) ((steps+1) P_all)^2 rows) for a matrix-free propagator. Centred nets
(output f(t) - f(0)) use psi_f(t) - psi_f(0) and Delta = y - f_c.
"""
from __future__ import annotations

import numpy as np

from .linear_rich import check_linear_inputs, solve_linear_rich
from .linear_sweep import layer_inputs


class _Layout:
    """Offsets of the blocks of q: Phi1..PhiL, G1..GL, A1..A(L-1), B1..B(L-1), f."""

    def __init__(self, L, n):
        self.L, self.n = L, n
        names = ([f"Phi{l}" for l in range(1, L + 1)] + [f"G{l}" for l in range(1, L + 1)]
                 + [f"A{l}" for l in range(1, L)] + [f"B{l}" for l in range(1, L)])
        self.slices, start = {}, 0
        for name in names:
            self.slices[name] = slice(start, start + n * n)
            start += n * n
        self.slices["f"] = slice(start, start + n)
        self.size = start + n

    def unpack(self, v):
        """v (..., size) -> dict of (..., n, n) kernels and (..., n) f (views)."""
        lead = v.shape[:-1]
        out = {k: v[..., s].reshape(*lead, self.n, self.n) for k, s in self.slices.items() if k != "f"}
        out["f"] = v[..., self.slices["f"]]
        return out


def _layer_jvp(g0, X, Y, Ab, Bb, W, dX, dY, dAb, dBb, dW):
    """Tangents of (Phi^l, G^l, A^l, B^{l-1}, diag H) of one layer; batched over a leading axis.

    C = Ab + X*W, E = Bb + Y*W, M = (I - g^2 C E)^{-1}, N = (I - g^2 E C)^{-1},
    Phi = M (X + g^2 C Y C^T) M^T, G = N (Y + g^2 E X E^T) N^T, A = M C, B = N E,
    f = diag M (X E^T + C Y) N^T (THEORY.md §2). d(M) = g^2 M (dC E + C dE) M.
    """
    g2, n = g0**2, X.shape[0]
    T = lambda Z: np.swapaxes(Z, -1, -2)  # noqa: E731
    C, E = Ab + X * W, Bb + Y * W
    dC, dE = dAb + dX * W + X * dW, dBb + dY * W + Y * dW
    M = np.linalg.inv(np.eye(n) - g2 * C @ E)
    Nn = np.linalg.inv(np.eye(n) - g2 * E @ C)
    dM = g2 * M @ (dC @ E + C @ dE) @ M
    dN = g2 * Nn @ (dE @ C + E @ dC) @ Nn
    S, R = X + g2 * C @ Y @ C.T, Y + g2 * E @ X @ E.T
    dS = dX + g2 * (dC @ Y @ C.T + C @ dY @ C.T + C @ Y @ T(dC))
    dR = dY + g2 * (dE @ X @ E.T + E @ dX @ E.T + E @ X @ T(dE))
    dPhi = dM @ S @ M.T + M @ dS @ M.T + M @ S @ T(dM)
    dG = dN @ R @ Nn.T + Nn @ dR @ Nn.T + Nn @ R @ T(dN)
    Q = X @ E.T + C @ Y
    dQ = dX @ E.T + X @ T(dE) + dC @ Y + C @ dY
    dF = dM @ Q @ Nn.T + M @ dQ @ Nn.T + M @ Q @ T(dN)
    return dPhi, dG, dM @ C + M @ dC, dN @ E + Nn @ dE, np.diagonal(dF, axis1=-2, axis2=-1)


def _saddle_tangents(res, lay: _Layout, g0, eta, P, Pa):
    """Every layer's tangents along every coordinate of q (batched), and the pieces reused.

    Returns (out, geo): out[l] = (dPhi^l, dG^l, d(M C)_l, d(N E)_l, df or None), each
    (size, n, n) (df: (size, n)); geo: the saddle's kernels, W = eta Theta Delta, masks.
    """
    L, n, T1 = res.L, lay.n, res.t.size
    Phi, G = [x.reshape(n, n) for x in res.Phi], [x.reshape(n, n) for x in res.G]
    A, B = [x.reshape(n, n) for x in res.A], [x.reshape(n, n) for x in res.B]
    lower = np.kron(np.tril(np.ones((T1, T1)), -1), np.ones((Pa, Pa)))
    train = np.zeros((T1, Pa))
    train[:, :P] = 1.0
    delta = np.zeros((T1, Pa))
    delta[:, :P] = res.delta
    W = lower * (eta * delta.reshape(1, n))
    dq = lay.unpack(np.eye(lay.size))                        # tangents along every coordinate
    dW = lower[None] * (-eta * (train.reshape(-1) * dq["f"])[:, None, :])  # dDelta = -df
    Phi0, Gtop = np.tile(res.Kx, (T1, T1)), np.ones((n, n))
    zero = np.zeros((lay.size, n, n))
    dPhi = [dq[f"Phi{l}"] for l in range(1, L + 1)]
    dG = [dq[f"G{l}"] for l in range(1, L + 1)]
    dA, dB = [dq[f"A{l}"] for l in range(1, L)], [dq[f"B{l}"] for l in range(1, L)]
    out = {}
    for l in range(1, L + 1):
        X, Y, Ab, Bb = layer_inputs(l, L, Phi, G, A, B, Phi0, Gtop)
        dX, dY, dAb, dBb = layer_inputs(l, L, dPhi, dG, dA, dB, zero, zero)
        Ab, Bb = (0.0 if Ab is None else Ab), (0.0 if Bb is None else Bb)
        dAb, dBb = (zero if dAb is None else dAb), (zero if dBb is None else dBb)
        tPhi, tG, tA, tB, tf = _layer_jvp(g0, X, Y, Ab, Bb, W, dX, dY, dAb, dBb, dW)
        out[l] = (tPhi, tG, tA, tB, tf if l == L else None)
    geo = {"Phi": [Phi0] + Phi, "G": G + [Gtop], "W": W, "lower": lower, "train": train.reshape(-1)}
    return out, geo


def saddle_jacobian(res, lay: _Layout, g0, eta, P, Pa) -> np.ndarray:
    """D = d<psi>/dq at the saddle ``res`` (a RichResult), dense (size, size), analytic."""
    L = res.L
    out, _ = _saddle_tangents(res, lay, g0, eta, P, Pa)
    Dt = np.zeros((lay.size, lay.size))
    rows = lay.unpack(Dt)                                    # row j of D^T: tangent along q_j
    for l, (tPhi, tG, tA, tB, tf) in out.items():
        rows[f"Phi{l}"][...], rows[f"G{l}"][...] = tPhi, tG
        if l < L:
            rows[f"A{l}"][...] = tA
        if l > 1:
            rows[f"B{l - 1}"][...] = tB
        if l == L:
            rows["f"][...] = tf
    return Dt.T


def _layer_fields(g0, X, Y, Ab, Bb, W):
    """<h h^T>, <g g^T>, <h g^T> of one linear site (THEORY.md §2)."""
    n = X.shape[0]
    C, E = Ab + X * W, Bb + Y * W
    M = np.linalg.inv(np.eye(n) - g0**2 * C @ E)
    Nn = np.linalg.inv(np.eye(n) - g0**2 * E @ C)
    return (M @ (X + g0**2 * C @ Y @ C.T) @ M.T, Nn @ (Y + g0**2 * E @ X @ E.T) @ Nn.T,
            g0 * M @ (X @ E.T + C @ Y) @ Nn.T)


def site_kappa(res, lay: _Layout, g0, eta, P, Pa) -> np.ndarray:
    """kappa = Cov_site(psi, psi) by Isserlis, block-diagonal across layers (THEORY.md §3).

    psi: h_a h_b (Phi^l), g_a g_b (G^l), h_a g_a / gamma0 at layer L (f); none for A, B.
    """
    L, n, T1 = res.L, lay.n, res.t.size
    Phi = [x.reshape(n, n) for x in res.Phi]
    G = [x.reshape(n, n) for x in res.G]
    A, B = [x.reshape(n, n) for x in res.A], [x.reshape(n, n) for x in res.B]
    lower = np.kron(np.tril(np.ones((T1, T1)), -1), np.ones((Pa, Pa)))
    delta = np.zeros((T1, Pa))
    delta[:, :P] = res.delta
    W = lower * (eta * delta.reshape(1, n))
    pair = lambda U, V: (np.einsum("ac,bd->abcd", U, V) + np.einsum("ad,bc->abcd", U, V)).reshape(n * n, n * n)  # noqa: E731
    kappa = np.zeros((lay.size, lay.size))
    Phi0, Gtop = np.tile(res.Kx, (T1, T1)), np.ones((n, n))
    for l in range(1, L + 1):
        X, Y, Ab, Bb = layer_inputs(l, L, Phi, G, A, B, Phi0, Gtop)
        hh, gg, hg = _layer_fields(g0, X, Y, 0.0 if Ab is None else Ab, 0.0 if Bb is None else Bb, W)
        sp, sg, sf = lay.slices[f"Phi{l}"], lay.slices[f"G{l}"], lay.slices["f"]
        kappa[sp, sp], kappa[sg, sg] = pair(hh, hh), pair(gg, gg)
        kappa[sp, sg] = pair(hg, hg)
        kappa[sg, sp] = kappa[sp, sg].T
        if l == L:
            hf = (np.einsum("ac,bc->abc", hh, hg) + np.einsum("ac,bc->abc", hg, hh)).reshape(n * n, n) / g0
            gf = (np.einsum("ca,bc->abc", hg, gg) + np.einsum("ac,cb->abc", gg, hg)).reshape(n * n, n) / g0
            kappa[sp, sf], kappa[sg, sf] = hf, gf
            kappa[sf, sp], kappa[sf, sg] = hf.T, gf.T
            kappa[sf, sf] = (hh * gg + hg * hg.T) / g0**2
    return kappa


def solve_linear_propagator(net, data, grid, responses_noise: bool = True) -> "RichResult":  # noqa: F821
    """The saddle of ``solve_linear_rich`` plus N Cov f and N Var of the equal-time kernels.

    Fills ``f_cov`` (steps+1, P_all, steps+1, P_all) and ``kernels_var`` ("Phi1".."PhiL",
    "G1".."GL", "K"; (steps+1, P, P) on training points), leading order in 1/N (THEORY.md §3).
    """
    check_linear_inputs(net, data, grid)
    res = solve_linear_rich(net, data, grid)
    L, T1, P, Pa = res.L, res.t.size, data.P, data.P_all
    n = T1 * Pa
    lay = _Layout(L, n)
    out, geo = _saddle_tangents(res, lay, net.gamma0, grid.eta, P, Pa)
    D = saddle_jacobian(res, lay, net.gamma0, grid.eta, P, Pa)
    kappa = site_kappa(res, lay, net.gamma0, grid.eta, P, Pa)
    if net.center:  # the output is f(t) - f(0): psi_f -> T psi_f; the sites see Delta = y - f_c
        sf = lay.slices["f"]
        Tc = np.eye(n)
        Tc[:, :Pa] -= np.kron(np.ones((T1, 1)), np.eye(Pa))
        D[sf] = Tc @ D[sf]
        kappa[sf] = Tc @ kappa[sf]
        kappa[:, sf] = kappa[:, sf] @ Tc.T
    if responses_noise:
        from .linear_action import propagator_from_action
        Sigma = propagator_from_action(res, lay, out, geo, kappa, D, net.gamma0, grid.eta)
        R, kappa = np.eye(lay.size), Sigma
    else:
        R = np.linalg.solve(np.eye(lay.size) - D, np.eye(lay.size))   # (I - D)^{-1}
    # observables: f (all points, all steps), equal-time kernel entries on training points
    diag_idx = [(t * Pa + a) * n + t * Pa + b for t in range(T1) for a in range(P) for b in range(P)]
    rows = {"f": R[lay.slices["f"]]}
    for name, s in lay.slices.items():
        if name[0] in "PG" and name != "f":
            rows[name] = R[s][diag_idx]
    # dK(t) = sum_l dG^{l+1} Phi^l + G^{l+1} dPhi^l (G^{L+1} = 1, Phi^0 = Kx fixed)
    eq = {k: v.reshape(T1, P, P).reshape(-1) for k, v in res.kernels.items()}
    Kx = np.tile(res.Kx[:P, :P].reshape(-1), T1)
    rows["K"] = rows[f"Phi{L}"] + Kx[:, None] * rows["G1"]
    for l in range(1, L):
        rows["K"] = rows["K"] + eq[f"G{l + 1}"][:, None] * rows[f"Phi{l}"] + eq[f"Phi{l}"][:, None] * rows[f"G{l + 1}"]
    cov = lambda O: O @ kappa @ O.T  # noqa: E731
    res.f_cov = cov(rows["f"]).reshape(T1, Pa, T1, Pa)
    res.kernels_var = {k: np.diag(cov(v)).reshape(T1, P, P) for k, v in rows.items() if k != "f"}
    res.params["propagator"] = "dense deep linear (I - D)^-1 kappa (I - D)^-T"
    return res
