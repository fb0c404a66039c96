"""Tangents of the deep linear saddle map q -> <psi>_q (THEORY.md §2, §3): the exact Jacobian D.

The order parameters of a deep linear net, v = (Phi^l, G^l for l = 1..L; A^l, B^l for
l = 1..L-1; f), are laid out flat by ``_Layout`` (every entry of every ((steps+1) P_all)^2
matrix a coordinate, anti-causal ones included). ``_layer_jvp`` differentiates one layer's
matrix equations in forward mode, batched over a leading axis of tangents, so that all
coordinates are differentiated at once: D (dense) for small problems.
"""
from __future__ import annotations

import numpy as np

from .linear_layer import LinearLayer
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
    """Tangents of (Phi^l, G^l, A^l, B^{l-1}, diag H) of one layer; batched over a leading axis
    (``deep.linear_layer``, THEORY.md §2)."""
    return LinearLayer(g0, X, Y, Ab, Bb, W).jvp(dX, dY, dAb, dBb, dW)


def saddle_geometry(res, eta: float, P: int):
    """(Phi^0..Phi^L, G^1..G^{L+1}, A list, B list, W = eta Theta Delta, lower mask, train mask),
    every two-time object as a ((steps+1) P_all)^2 matrix (index t P_all + mu)."""
    T1, Pa = res.f.shape
    n = T1 * Pa
    Phi = [np.tile(res.Kx, (T1, T1))] + [x.reshape(n, n) for x in res.Phi]
    G = [x.reshape(n, n) for x in res.G] + [np.ones((n, n))]
    A, B = [x.reshape(n, n) for x in res.A], [x.reshape(n, n) for x in res.B]
    lower = np.kron(np.tril(np.ones((T1, T1)), -1), np.ones((Pa, Pa)))
    train = np.zeros((T1, Pa))
    train[:, :P] = 1.0
    delta = np.zeros((T1, Pa))
    delta[:, :P] = res.delta
    W = lower * (eta * delta.reshape(1, n))
    return Phi, G, A, B, W, lower, train.reshape(-1)


def _saddle_tangents(res, lay: _Layout, g0, eta, P, Pa):
    """Every layer's tangents along every coordinate of q (batched), and the pieces reused.

    Returns (out, geo): out[l] = (dPhi^l, dG^l, d(M C)_l, d(N E)_l, df or None), each
    (size, n, n) (df: (size, n)); geo: the saddle's kernels, W = eta Theta Delta, masks.
    """
    L, n = res.L, lay.n
    Phis, Gs, A, B, W, lower, train = saddle_geometry(res, eta, P)
    Phi0, Phi, G, Gtop = Phis[0], Phis[1:], Gs[:-1], Gs[-1]
    dq = lay.unpack(np.eye(lay.size))                        # tangents along every coordinate
    dW = lower[None] * (-eta * (train * dq["f"])[:, None, :])  # dDelta = -df
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
    geo = {"Phi": Phis, "G": Gs, "W": W, "lower": lower, "train": train}
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
