"""Products with the Hessian of the deep linear action, matrix-free (THEORY.md §3).

The dense propagator (``deep.linear_propagator``) forms the Hessian H of the deep linear
action over (v, w): (4L - 1) n^2 + 2L n^2 + n rows for n = (steps+1) P_all, 0.7 million at
L = 3, P = 4, 50 steps. This module never forms it. ``ActionOperator`` applies H to a batch
of vectors from the layer map's tangent (JVP) and adjoint (VJP) (``deep.linear_layer``), the
Gaussian sites' covariance (Isserlis as one congruence, below) and the response terms of
``deep.linear_action``; nothing bigger than n x n per direction is stored.

In THEORY.md §3's reading of H (``linear_action.theory_form``): with the anti-causal entries
of B^l (of A^l) taken as the conjugates of A^l (of B^l), q' = (kernels, f, A strictly causal,
B causal) and their conjugates w' (``_hat`` places a vector over q' on w'),

    d2S/dq'dq' = 0,  d2S/dw'dq' = I - D',  d2S/dw'dw' = kappa',
    N Cov(q') = (I - D')^{-1} kappa' (I - D')^{-T},

so for observables c_a (rows over q') with adjoints u_a = (I - D')^{-T} c_a
(``deep.linear_substitution``), N Cov(c_a, c_b) = U_a . H U_b with U = _hat(u).

Isserlis as a congruence: a layer's psi (h_a h_b, g_a g_b, h_a g_a / gamma0) are quadratic
forms z^T Q z of the Gaussian site z = (h, g) with covariance Sigma, and for symmetric Q, Q'
Cov(z^T Q z, z^T Q' z) = 2 tr(Sigma Q Sigma Q'); so kappa applied to a direction (the
coefficients of a quadratic form Q) is read off 2 Sigma Q Sigma.
"""
from __future__ import annotations

import numpy as np

from .linear_layer import LinearLayer
from .linear_sweep import layer_inputs
from .linear_tangents import _Layout, saddle_geometry
from .site_adjoint import center_f, center_f_cotangent


def tangent_inputs(v, l: int, L: int, zero):
    """(dX, dY, dAb, dBb) of layer l (Phi^{l-1}, G^{l+1}, A^{l-1}, B^l) from a vector v over
    ``_Layout`` names; ``zero`` where the layer has no such input (l = 1, l = L)."""
    return (v[f"Phi{l - 1}"] if l > 1 else zero, v[f"G{l + 1}"] if l < L else zero,
            v[f"A{l - 1}"] if l > 1 else zero, v[f"B{l}"] if l < L else zero)


def _sym(Z):
    return 0.5 * (Z + np.swapaxes(Z, -1, -2))


class ActionOperator:
    """Products with the Hessian H of the deep linear action at a saddle (a RichResult), in
    the layout of ``linear_action.action_hessian``: v over ``_Layout`` (Phi, G, A, B, f),
    w over (Phi, G, f). Vectors are dicts of (k, n, n) / (k, n) arrays, k directions."""

    def __init__(self, res, g0: float, eta: float, P: int, center: bool = False):
        L, T1, Pa = res.L, res.t.size, res.f.shape[1]
        self.L, self.n, self.T1, self.Pa = L, T1 * Pa, T1, Pa
        self.g0, self.eta, self.center = g0, eta, center
        self.lay = _Layout(L, self.n)
        Phis, Gs, A, B, W, lower, train = saddle_geometry(res, eta, P)
        self.geo = {"Phi": Phis, "G": Gs, "W": W, "lower": lower, "train": train}
        self.layers = []
        for l in range(1, L + 1):
            X, Y, Ab, Bb = layer_inputs(l, L, Phis[1:], Gs[:-1], A, B, Phis[0], Gs[-1])
            self.layers.append(LinearLayer(g0, X, Y, 0.0 if Ab is None else Ab,
                                           0.0 if Bb is None else Bb, W))
        self.sigma = []                                      # Cov of the site z = (h, g)
        for layer in self.layers:
            hh, gg, hg = layer.fields()
            self.sigma.append(np.block([[hh, hg], [hg.T, gg]]))
        t_of = np.repeat(np.arange(T1), Pa)
        self.strict = (t_of[:, None] > t_of[None, :]).astype(float)     # A causal: s < t
        self.weak = (t_of[:, None] >= t_of[None, :]).astype(float)      # B causal: s <= t

    # -- vectors ---------------------------------------------------------------------------
    def zeros_v(self, k):
        n = self.n
        v = {name: np.zeros((k, n, n)) for name in self.lay.slices if name != "f"}
        v["f"] = np.zeros((k, n))
        return v

    def zeros_w(self, k):
        return {name: a for name, a in self.zeros_v(k).items() if name[0] in "PG" or name == "f"}

    def _center_out(self, f):
        """f -> T f, T f(t) = f(t) - f(0): the centred output (THEORY.md §1)."""
        return center_f(f, self.Pa) if self.center else f

    def _center_in(self, f):
        """f -> T^T f."""
        return center_f_cotangent(f, self.Pa) if self.center else f

    # -- the saddle map's derivative D and its transpose -----------------------------------
    def jvp(self, dv):
        """(D dv, per-layer tangents of (M C, N E)) for a batch dv."""
        k, L, eta = dv["f"].shape[0], self.L, self.eta
        dW = self.geo["lower"][None] * (-eta * (self.geo["train"] * dv["f"])[:, None, :])
        out, resp, zero = self.zeros_v(k), [], np.zeros((k, self.n, self.n))
        for l, layer in enumerate(self.layers, start=1):
            tPhi, tG, tA, tB, tf = layer.jvp(*tangent_inputs(dv, l, L, zero), dW)
            out[f"Phi{l}"], out[f"G{l}"] = tPhi, tG
            if l < L:
                out[f"A{l}"] = tA
            if l > 1:
                out[f"B{l - 1}"] = tB
            if l == L:
                out["f"] = self._center_out(tf)
            resp.append((tA, tB))
        return out, resp

    def vjp(self, y):
        """D^T y for a batch y."""
        k, L, n = y["f"].shape[0], self.L, self.n
        zero, zf = np.zeros((k, n, n)), np.zeros((k, n))
        yf = self._center_in(y["f"])
        out = self.zeros_v(k)
        bW = np.zeros((k, n, n))
        for l, layer in enumerate(self.layers, start=1):
            bX, bY, bAb, bBb, bWl = layer.vjp(y[f"Phi{l}"], y[f"G{l}"],
                                              y[f"A{l}"] if l < L else zero,
                                              y[f"B{l - 1}"] if l > 1 else zero,
                                              yf if l == L else zf)
            bW += bWl
            if l > 1:
                out[f"Phi{l - 1}"] += bX
                out[f"A{l - 1}"] += bAb
            if l < L:
                out[f"G{l + 1}"] += bY
                out[f"B{l}"] += bBb
        out["f"] += -self.eta * self.geo["train"] * np.einsum("kab,ab->kb", bW, self.geo["lower"])
        return out

    # -- the other blocks of H -------------------------------------------------------------
    def kappa(self, zw):
        """kappa zw: Isserlis, block-diagonal across layers (f belongs to layer L)."""
        k, n, g0 = zw["f"].shape[0], self.n, self.g0
        out = self.zeros_w(k)
        zf = self._center_in(zw["f"])
        for l, sigma in enumerate(self.sigma, start=1):
            Q = np.zeros((k, 2 * n, 2 * n))
            Q[:, :n, :n], Q[:, n:, n:] = _sym(zw[f"Phi{l}"]), _sym(zw[f"G{l}"])
            if l == self.L:
                idx = np.arange(n)
                Q[:, idx, n + idx] = Q[:, n + idx, idx] = zf / (2 * g0)
            Z = 2.0 * sigma @ Q @ sigma
            out[f"Phi{l}"], out[f"G{l}"] = Z[:, :n, :n], Z[:, n:, n:]
            if l == self.L:
                out["f"] = self._center_out(np.diagonal(Z[:, :n, n:], axis1=1, axis2=2) / g0)
        return out

    def _pullback(self, l, XC, XE, out):
        """out += sum over C_l, E_l entries of XC dC_l/dv + XE dE_l/dv (THEORY.md §2 memories)."""
        W, lower, train, eta = self.geo["W"], self.geo["lower"], self.geo["train"], self.eta
        X, Y = self.geo["Phi"][l - 1], self.geo["G"][l]
        if l > 1:
            out[f"A{l - 1}"] += XC
            out[f"Phi{l - 1}"] += XC * W
        if l < self.L:
            out[f"B{l}"] += XE
            out[f"G{l + 1}"] += XE * W
        out["f"] += -eta * train * (np.einsum("kts,ts->ks", XC, X * lower)
                                    + np.einsum("kts,ts->ks", XE, Y * lower))

    def quadratic_parts(self, zv, zw):
        """(d2S/dv dv zv, d2S/dw dv zv, kappa zw): every block of H applied to (zv, zw) except
        d2S/dv dw zw, which is the transpose of the second (H is symmetric), so that
        U.H U' = zv.hvv' + zw.hwv' + zw'.hwv + zw.kz' needs no transpose of D."""
        g2 = self.g0**2
        Dz, resp = self.jvp(zv)
        hvv = self.zeros_v(zv["f"].shape[0])
        for l, (tA, tB) in enumerate(resp, start=1):     # d2(-ln det(I - g^2 C E)), linear_action
            self._pullback(l, g2 * np.swapaxes(tB, 1, 2), g2 * np.swapaxes(tA, 1, 2), hvv)
        for l in range(1, self.L):                       # -gamma0^2 tr(A^l B^l)
            hvv[f"A{l}"] += -g2 * np.swapaxes(zv[f"B{l}"], 1, 2)
            hvv[f"B{l}"] += -g2 * np.swapaxes(zv[f"A{l}"], 1, 2)
        hwv = {name: zv[name] - Dz[name] for name in zw}  # (I - D) on the kernel and f rows
        return hvv, hwv, self.kappa(zw)

    def apply(self, zv, zw):
        """H (zv, zw) -> (v part, w part)."""
        hv, hwv, kz = self.quadratic_parts(zv, zw)
        ew = {name: zw.get(name, np.zeros_like(a)) for name, a in hv.items()}
        back = self.vjp(ew)                              # (I - D)^T on zw
        for name in hv:
            hv[name] += ew[name] - back[name]
        return hv, {name: hwv[name] + kz[name] for name in kz}


def _hat(op: ActionOperator, u):
    """A vector u over q' -> its conjugate placement in (v, w): kernels and f on w, the
    coefficient of A^l(t, s) on B^l(s, t) and of B^l(t, s) on A^l(s, t), times -1/gamma0^2."""
    k, g2 = u["f"].shape[0], op.g0**2
    zw = {name: u[name] for name in op.zeros_w(0)}
    zv = op.zeros_v(k)
    for l in range(1, op.L):
        zv[f"B{l}"] = -np.swapaxes(u[f"A{l}"], 1, 2) / g2
        zv[f"A{l}"] = -np.swapaxes(u[f"B{l}"], 1, 2) / g2
    return zv, zw


def _on_q(op: ActionOperator, hv):
    """The q' entries of a v vector: kernels and f whole, A strictly causal, B causal."""
    out = dict(hv)
    for l in range(1, op.L):
        out[f"A{l}"] = hv[f"A{l}"] * op.strict
        out[f"B{l}"] = hv[f"B{l}"] * op.weak
    return out


def _flat(op: ActionOperator, zv, zw):
    """(k, m): the coordinates of a conjugate-placed vector (``_hat``) that can be nonzero
    (kernels and f on w; the anti-causal response entries on v), for dot products."""
    k = zw["f"].shape[0]
    parts = [zw[name].reshape(k, -1) for name in zw]
    for l in range(1, op.L):
        parts += [zv[f"A{l}"][:, op.weak.T.astype(bool)], zv[f"B{l}"][:, op.strict.T.astype(bool)]]
    return np.concatenate(parts, axis=1)


def adjoint_pairs(op: ActionOperator, sub, c):
    """For a batch of observables c (rows over q'): (U, V, R) with U the conjugate placement of
    u = (I - D')^{-T} c flattened by ``_flat``, V = (hvv, hwv + kz) flattened alike and R = hwv
    (``ActionOperator.quadratic_parts``), so that N Cov(c_a, c_b) = U_a . V_b + R_a . U_b[:m]
    (m = len(R[0]): the w part comes first in ``_flat``)."""
    zv, zw = _hat(op, sub.backward(c))
    hvv, hwv, kz = op.quadratic_parts(zv, zw)
    k = zw["f"].shape[0]
    R = np.concatenate([hwv[name].reshape(k, -1) for name in zw], axis=1)
    return _flat(op, zv, zw), _flat(op, hvv, {name: hwv[name] + kz[name] for name in kz}), R
