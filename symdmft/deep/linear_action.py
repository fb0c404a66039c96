"""The Gaussian fluctuation integral of a deep linear net, response functions included (THEORY.md §3).

Averaging the weights W^l(0) of a linear net produces, besides the kernels, the bilinear
coupling ``-gamma0^2 sum_l tr(A^l B^l)`` (``tr(A B) = sum_{ts} A(t,s) B(s,t)``), and for a
linear site the single-site generating function is explicit. With C_l = A^{l-1} + eta Theta
Delta Phi^{l-1} and E_l = B^l + eta Theta Delta G^{l+1} (any support, not only causal):

    ln Z_l = -ln det(I - gamma0^2 C_l E_l) + ln E[exp(-w_l . psi_l)]

(the MSR integral of the linear site is the Jacobian determinant times an average over the
solution (h, g), which is Gaussian). So, with kernels and f in x, their conjugates in w,

    S = w . x - gamma0^2 sum_l tr(A^l B^l) + sum_l ln Z_l(w_l; x, A, B).

At the saddle (w = 0, A, B causal) ``dS/dB^l = 0`` gives A^l = M C and ``dS/dA^l = 0``
gives B^l = N E (THEORY.md §2). A and B carry no conjugate of their own: the anti-causal
entries of B^l act as the conjugate of A^l and those of A^l as the conjugate of B^l, which
is why the Hessian has a v-v block. Hessian at the saddle, v = (x, A, B):

    d2S/dw dw = kappa (Isserlis),   d2S/dw dv = I_x - d<psi_x>/dv,
    d2S/dv dv = -gamma0^2 [A-B pairing] + sum_l d2(-ln det(I - gamma0^2 C_l E_l))/dv dv,

the last by the derivative of its gradient (gamma0^2 (N E)^T on C, gamma0^2 (M C)^T on E)
along C_l, E_l (the bilinear terms Phi o W(f) add nothing at the saddle: their supports miss).
Then ``N Cov(v) = -(H^{-1})_{vv}`` (THEORY.md §3, Sigma = -(nabla^2 S)^{-1}).
"""
from __future__ import annotations

import numpy as np


def _pullback(l, L, lay, geo, eta, XC, XE):
    """(size, size): sum over C_l, E_l entries of XC dC_l/dv + XE dE_l/dv, batched over rows."""
    out = np.zeros((XC.shape[0], lay.size))
    v = lay.unpack(out)
    W, lower, train = geo["W"], geo["lower"], geo["train"]
    X, Y = geo["Phi"][l - 1], geo["G"][l]                   # Phi^{l-1}, G^{l+1}
    if l > 1:
        v[f"A{l - 1}"][...] += XC
        v[f"Phi{l - 1}"][...] += XC * W
    if l < L:
        v[f"B{l}"][...] += XE
        v[f"G{l + 1}"][...] += XE * W
    # W(t, s) = eta 1[s<t] Delta(s) and dDelta = -df on training columns
    v["f"][...] += -eta * train * (np.einsum("jts,ts->js", XC, X * lower)
                                   + np.einsum("jts,ts->js", XE, Y * lower))
    return out


def action_hessian(res, lay, out, geo, kappa, D, g0, eta) -> np.ndarray:
    """The full Hessian over (v, w), v in ``lay`` order, w = conjugates of (Phi, G, f)."""
    L, n, size = res.L, lay.n, lay.size
    xs = np.concatenate([np.arange(size)[lay.slices[k]] for k in lay.slices
                         if k[0] in "PG" or k == "f"])
    g2 = g0**2
    Hvv = np.zeros((size, size))
    for l in range(1, L + 1):
        tA, tB = out[l][2], out[l][3]
        Hvv += _pullback(l, L, lay, geo, eta, g2 * np.swapaxes(tB, 1, 2), g2 * np.swapaxes(tA, 1, 2))
    Hvv = 0.5 * (Hvv + Hvv.T)                                # symmetric up to rounding
    idx = np.arange(n * n).reshape(n, n)
    for l in range(1, L):
        a = np.arange(size)[lay.slices[f"A{l}"]]
        b = np.arange(size)[lay.slices[f"B{l}"]][idx.T.reshape(-1)]  # B(s,t) paired with A(t,s)
        Hvv[a, b] += -g2
        Hvv[b, a] += -g2
    Hwv = (np.eye(size) - D)[xs]
    Hww = kappa[np.ix_(xs, xs)]
    return np.block([[Hvv, Hwv.T], [Hwv, Hww]])


def propagator_from_action(res, lay, out, geo, kappa, D, g0, eta) -> np.ndarray:
    """N Cov(v) = -(H^{-1})_{vv} (THEORY.md §3)."""
    H = action_hessian(res, lay, out, geo, kappa, D, g0, eta)
    size = lay.size
    rhs = np.zeros((H.shape[0], size))
    rhs[:size] = np.eye(size)
    return -np.linalg.solve(H, rhs)[:size]


def theory_form(lay, H, g0, T1, Pa):
    """Read H in THEORY.md §3's form: q' = (kernels, f, A strictly causal, B causal incl. t = s),
    hats w' = (conjugates of kernels and f, -gamma0^2 B(s,t) for A(t,s), -gamma0^2 A(s,t) for
    B(t,s)). Returns q' (indices into v), the time slice max(t, s) of each, the blocks
    d2S/dq'dq' (zero), I - D' = d2S/dw'dq' and kappa' = d2S/dw'dw', and the placement of w'
    in (v, w): indices ``hat`` and factors ``scale`` (w'_i = H-coordinate hat_i / scale_i).
    """
    size, n = lay.size, lay.n
    t_of = np.repeat(np.arange(T1), Pa)
    tt, ss = np.meshgrid(t_of, t_of, indexing="ij")
    slice_nn = np.maximum(tt, ss).reshape(-1)
    causal_lo = (tt > ss).reshape(-1)                        # strictly earlier s
    causal_le = (tt >= ss).reshape(-1)
    idx = np.arange(n * n).reshape(n, n)
    transpose = idx.T.reshape(-1)
    q, hat, scale, slices = [], [], [], []
    x_names = [k for k in lay.slices if k[0] in "PG" or k == "f"]
    offset = size                                            # conjugates follow v in H
    for k in x_names:
        s = lay.slices[k]
        m = s.stop - s.start
        q += list(range(s.start, s.stop))
        hat += list(range(offset, offset + m))
        scale += [1.0] * m
        slices += list(slice_nn) if k != "f" else list(t_of)
        offset += m
    for l in range(1, len([k for k in lay.slices if k[0] == "A"]) + 1):
        a0, b0 = lay.slices[f"A{l}"].start, lay.slices[f"B{l}"].start
        for keep, own, partner in ((causal_lo, a0, b0), (causal_le, b0, a0)):
            sel = np.flatnonzero(keep)
            q += list(own + sel)
            hat += list(partner + transpose[sel])
            scale += [-1.0 / g0**2] * sel.size
            slices += list(slice_nn[sel])
    q, hat, scale = np.array(q), np.array(hat), np.array(scale)
    Hhq = scale[:, None] * H[np.ix_(hat, q)]
    Hhh = scale[:, None] * H[np.ix_(hat, hat)] * scale[None, :]
    return {"q": q, "slice": np.array(slices), "Hqq": H[np.ix_(q, q)], "I_minus_D": Hhq,
            "kappa": Hhh, "hat": hat, "scale": scale}
