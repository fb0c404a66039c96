"""Forward and back substitution with I - D' of a deep linear net, row by row (THEORY.md §3).

D' is the Jacobian of the saddle map on q' = (Phi^l, G^l every entry; A^l strictly causal;
B^l causal; f) (``linear_action.theory_form``; it equals the saddle Jacobian D restricted
to q'). It is zero above its time slice and nilpotent within it, in the order of the causal
frontier (``linear_rich``): time row k of the forward chain (C, M, S, Phi, A; ascending l),
of the backward chain (E, N, R, G, B; descending l), then f(k), then the column k of
W = eta Theta Delta. So

* ``forward(b)`` solves (I - D') x = b by running the linearised frontier once (every
  tangent entry computed from earlier ones, then b added): the JVP forward substitution;
* ``backward(c)`` solves (I - D')^T u = c by running the transpose of that program in reverse
  (an adjoint pass): u is the cotangent of each injected b.

Each row costs O(P_all (k P_all)^2) per layer and direction, as the frontier itself, instead
of the O(n^3) of a product with the full matrices; no power series is summed (the Neumann
series of a nilpotent D' is exact but its terms grow like path counts, 1e6 at 20 steps).
Vectors are dicts of (K, n, n) arrays (f: (K, n)) over the names of ``_Layout``, K
directions; kernel entries are all independent (both (t, s) and (s, t)).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .linear_operator import tangent_inputs


def _T(Z):
    return np.swapaxes(Z, -1, -2)


class _Chain(NamedTuple):
    """One layer's matrices in one of the two chains, which are the same program with the
    roles of the memories swapped. The forward chain ("phi"): own memory O = C (strictly
    causal), other P = E, Inv = M = (I - g^2 C E)^{-1}, Src = S = X + g^2 C Y C^T (Xs = X,
    Ko = Y), kernel Phi^l = M S M^T, response A^l = M C. The backward chain ("g"): O = E
    (causal: its equal-time part is B's), P = C, Inv = N, Src = R = Y + g^2 E X E^T (Xs = Y,
    Ko = X), kernel G^l, response B^{l-1} = N E. The d-fields hold tangents in ``forward``
    and cotangents in ``backward``; dIn is the tangent of the incoming response (A^{l-1} or
    B^l) that enters O. At the saddle the equal-time part of E is zero (no phi'' in a linear
    net), so the causal and strictly causal column ranges give the same products."""
    O: np.ndarray
    P: np.ndarray
    Inv: np.ndarray
    Src: np.ndarray
    Xs: np.ndarray
    Ko: np.ndarray
    W: np.ndarray
    dO: np.ndarray
    dP: np.ndarray
    dInv: np.ndarray
    dSrc: np.ndarray
    dXs: np.ndarray
    dKo: np.ndarray
    dIn: np.ndarray
    kernel: str
    response: str | None
    causal: bool


class Substitution:
    """Row-by-row substitution with I - D' at the saddle held by ``op`` (an ActionOperator)."""

    def __init__(self, op):
        self.op, self.L, self.n, self.p, self.T1 = op, op.L, op.n, op.Pa, op.T1
        self.g2, self.eta, self.center = op.g0**2, op.eta, op.center
        self.layers = op.layers
        self.lower, self.train = op.geo["lower"], op.geo["train"]

    def _zeros(self, K):
        return np.zeros((K, self.n, self.n))

    def _chain(self, chain: str, l: int, v, zero, t) -> _Chain:
        """Layer l's part of one chain at the saddle, with the tangents (or cotangents) ``t``
        of its matrices and those of its inputs read from ``v``."""
        ly, i, L = self.layers[l - 1], l - 1, self.L
        dX, dY, dAb, dBb = tangent_inputs(v, l, L, zero)
        if chain == "phi":
            return _Chain(ly.C, ly.E, ly.M, ly.S, ly.X, ly.Y, ly.W, t["C"][i], t["E"][i], t["M"][i],
                          t["S"][i], dX, dY, dAb, f"Phi{l}", f"A{l}" if l < L else None, False)
        return _Chain(ly.E, ly.C, ly.N, ly.R, ly.Y, ly.X, ly.W, t["E"][i], t["C"][i], t["N"][i],
                      t["R"][i], dY, dX, dBb, f"G{l}", f"B{l - 1}" if l > 1 else None, True)

    # -- (I - D') x = b --------------------------------------------------------------------
    def forward(self, b):
        K, L, p = b["f"].shape[0], self.L, self.p
        zero = self._zeros(K)
        x = {name: np.zeros_like(a) for name, a in b.items()}
        dW = self._zeros(K)
        t = {key: [self._zeros(K) for _ in range(L)] for key in "CEMNSR"}
        dF0 = None
        for k in range(self.T1):
            r, lo, q = slice(k * p, (k + 1) * p), k * p, (k + 1) * p
            for l in range(1, L + 1):                                   # forward chain
                self._row(self._chain("phi", l, x, zero, t), x, b, dW, r, lo, q)
            for l in range(L, 0, -1):                                   # backward chain
                self._row(self._chain("g", l, x, zero, t), x, b, dW, r, lo, q)
            dF = self._output_row(x, t, zero, r, lo, q)                 # f(k), correlator rule
            if k == 0:
                dF0 = dF
            x["f"][:, r] = (dF - dF0 if self.center else dF) + b["f"][:, r]
            dW[:, :, r] = -self.eta * self.lower[:, r] * (self.train[r] * x["f"][:, r])[:, None, :]
        return x

    def _row(self, c: _Chain, x, b, dW, r, lo, q):
        """Row k of one layer's chain: its memory, inverse, source kernel (row and column),
        kernel (row and column) and response; tangents of earlier rows are final."""
        g2, e = self.g2, (q if c.causal else lo)                        # the memory's columns
        O, P, Inv, Ko = c.O, c.P, c.Inv, c.Ko
        c.dO[:, r, :lo] = c.dIn[:, r, :lo] + c.dXs[:, r, :lo] * c.W[r, :lo] + c.Xs[r, :lo] * dW[:, r, :lo]
        if c.causal:
            c.dO[:, r, r] = c.dIn[:, r, r]                              # equal-time B
        c.dInv[:, r, :q] = g2 * (c.dO[:, r, :e] @ (P[:e, :lo] @ Inv[:lo, :q])
                                 + O[r, :e] @ c.dP[:, :e, :lo] @ Inv[:lo, :q]
                                 + (O[r, :e] @ P[:e, :lo]) @ c.dInv[:, :lo, :q])
        c.dSrc[:, r, :q] = c.dXs[:, r, :q] + g2 * (c.dO[:, r, :e] @ (Ko[:e, :e] @ O[:q, :e].T)
                                                   + O[r, :e] @ c.dKo[:, :e, :e] @ O[:q, :e].T
                                                   + (O[r, :e] @ Ko[:e, :e]) @ _T(c.dO[:, :q, :e]))
        c.dSrc[:, :lo, r] = c.dXs[:, :lo, r] + g2 * (c.dO[:, :lo, :e] @ (Ko[:e, :e] @ O[r, :e].T)
                                                     + O[:lo, :e] @ (c.dKo[:, :e, :e] @ O[r, :e].T)
                                                     + (O[:lo, :e] @ Ko[:e, :e]) @ _T(c.dO[:, r, :e]))
        self._kernel_rows(x[c.kernel], b[c.kernel], c.dInv, c.dSrc, Inv, c.Src, r, lo, q)
        if c.response is not None:
            x[c.response][:, r, :e] = (c.dInv[:, r, :q] @ O[:q, :e] + Inv[r, :q] @ c.dO[:, :q, :e]
                                       + b[c.response][:, r, :e])

    @staticmethod
    def _kernel_rows(out, b, dM, dS, M, S, r, lo, q):
        """Row k and column k of d(M S M^T), plus b."""
        SMt = S[:q, :q] @ M[:q, :q].T
        out[:, r, :q] = (dM[:, r, :q] @ SMt + M[r, :q] @ dS[:, :q, :q] @ M[:q, :q].T
                         + (M[r, :q] @ S[:q, :q]) @ _T(dM[:, :q, :q]) + b[:, r, :q])
        out[:, :lo, r] = (dM[:, :lo, :q] @ (S[:q, :q] @ M[r, :q].T)
                          + M[:lo, :q] @ (dS[:, :q, :q] @ M[r, :q].T)
                          + (M[:lo, :q] @ S[:q, :q]) @ _T(dM[:, r, :q]) + b[:, :lo, r])

    def _output_row(self, x, t, zero, r, lo, q):
        """d diag(M Q N^T) at row k, top layer, Q = Phi^{L-1} E^T + C G^{L+1} (THEORY.md §2)."""
        L, ly, i = self.L, self.layers[-1], self.L - 1
        dX, dY = tangent_inputs(x, L, L, zero)[:2]
        M, N, Q, X, Y, E = ly.M, ly.N, ly.Q, ly.X, ly.Y, ly.E
        dM, dN, dC, dE = t["M"][i], t["N"][i], t["C"][i], t["E"][i]
        Mr, Nr = M[r, :q], N[r, :q]
        MdQ = (Mr @ dX[:, :q, :q]) @ E[:q, :q].T + (Mr @ X[:q, :q]) @ _T(dE[:, :q, :q]) \
            + (Mr @ dC[:, :q, :q]) @ Y[:q, :q] + (Mr @ ly.C[:q, :q]) @ dY[:, :q, :q]     # M_k dQ
        return (np.einsum("kij,ij->ki", dM[:, r, :q] @ Q[:q, :q], Nr)
                + np.einsum("kij,ij->ki", MdQ, Nr)
                + np.einsum("ij,kij->ki", Mr @ Q[:q, :q], dN[:, r, :q]))

    # -- (I - D')^T u = c: the same program transposed, rows in reverse ---------------------
    def backward(self, c):
        K, L, p = c["f"].shape[0], self.L, self.p
        sink = self._zeros(K)                                   # cotangents of constants
        u = {name: a.copy() for name, a in c.items()}          # cotangents of the q' tangents
        bar = {key: [self._zeros(K) for _ in range(L)] for key in "CEMNSR"}
        bW, bF0 = self._zeros(K), np.zeros((K, p))
        for k in range(self.T1 - 1, -1, -1):
            r, lo, q = slice(k * p, (k + 1) * p), k * p, (k + 1) * p
            u["f"][:, r] += -self.eta * self.train[r] * np.einsum("kir,ir->kr", bW[:, :, r], self.lower[:, r])
            bF = u["f"][:, r].copy()
            if self.center:
                bF0 -= u["f"][:, r]
                if k == 0:
                    bF += bF0
            self._output_row_T(u, bar, bF, r, lo, q)
            for l in range(1, L + 1):                                   # backward chain, reversed
                self._row_T(self._chain("g", l, u, sink, bar), u, bW, r, lo, q)
            for l in range(L, 0, -1):                                   # forward chain, reversed
                self._row_T(self._chain("phi", l, u, sink, bar), u, bW, r, lo, q)
        return u

    def _row_T(self, c: _Chain, u, bW, r, lo, q):
        """The transpose of ``_row``, its lines in reverse: cotangents (in the _Chain's tangent
        slots) of the row's response, kernel, source kernel, inverse and memory passed on."""
        g2, e = self.g2, (q if c.causal else lo)
        O, P, Inv, Ko = c.O, c.P, c.Inv, c.Ko
        bO, bInv, bSrc = c.dO, c.dInv, c.dSrc
        if c.response is not None:
            ur = u[c.response][:, r, :e]
            bInv[:, r, :q] += ur @ O[:q, :e].T
            bO[:, :q, :e] += Inv[r, :q].T @ ur
        self._kernel_rows_T(u[c.kernel], bInv, bSrc, Inv, c.Src, r, lo, q)
        Sr, Sc = bSrc[:, r, :q], bSrc[:, :lo, r]
        c.dXs[:, r, :q] += Sr
        c.dXs[:, :lo, r] += Sc
        bO[:, r, :e] += g2 * Sr @ (O[:q, :e] @ Ko[:e, :e])
        c.dKo[:, :e, :e] += g2 * O[r, :e].T @ (Sr @ O[:q, :e])
        bO[:, :q, :e] += g2 * _T(Sr) @ (O[r, :e] @ Ko[:e, :e])
        bO[:, :lo, :e] += g2 * Sc @ (O[r, :e] @ Ko[:e, :e])
        c.dKo[:, :e, :e] += g2 * O[:lo, :e].T @ Sc @ O[r, :e]
        bO[:, r, :e] += g2 * _T(Sc) @ (O[:lo, :e] @ Ko[:e, :e])
        Ir = bInv[:, r, :q]
        bO[:, r, :e] += g2 * Ir @ (P[:e, :lo] @ Inv[:lo, :q]).T
        c.dP[:, :e, :lo] += g2 * O[r, :e].T @ (Ir @ Inv[:lo, :q].T)
        bInv[:, :lo, :q] += g2 * (O[r, :e] @ P[:e, :lo]).T @ Ir
        Or = bO[:, r, :lo]
        c.dIn[:, r, :lo] += Or
        if c.causal:
            c.dIn[:, r, r] += bO[:, r, r]
        c.dXs[:, r, :lo] += Or * c.W[r, :lo]
        bW[:, r, :lo] += Or * c.Xs[r, :lo]

    @staticmethod
    def _kernel_rows_T(uK, bM, bS, M, S, r, lo, q):
        """Transpose of ``_kernel_rows``: the cotangents of row k and column k of the kernel
        (final in ``uK``) into those of M and S."""
        Or, Oc = uK[:, r, :q], uK[:, :lo, r]
        Mr, MS = M[r, :q], M[r, :q] @ S[:q, :q]
        bM[:, r, :q] += Or @ (S[:q, :q] @ M[:q, :q].T).T
        bS[:, :q, :q] += Mr.T @ (Or @ M[:q, :q])
        bM[:, :q, :q] += _T(Or) @ MS
        bM[:, :lo, :q] += Oc @ MS
        bS[:, :q, :q] += M[:lo, :q].T @ Oc @ Mr
        bM[:, r, :q] += _T(Oc) @ (M[:lo, :q] @ S[:q, :q])

    def _output_row_T(self, u, bar, bF, r, lo, q):
        """Transpose of ``_output_row``."""
        L, ly, i = self.L, self.layers[-1], self.L - 1
        M, N, Q, X, Y, E = ly.M, ly.N, ly.Q, ly.X, ly.Y, ly.E          # dY = 0: G^{L+1} is fixed
        Mr, Nr = M[r, :q], N[r, :q]
        bar["M"][i][:, r, :q] += (bF[:, :, None] * Nr) @ Q[:q, :q].T
        bar["N"][i][:, r, :q] += bF[:, :, None] * (Mr @ Q[:q, :q])
        Fn = bF[:, :, None] * Nr                                        # dQ's cotangent = Mr^T Fn
        if L > 1:
            u[f"Phi{L - 1}"][:, :q, :q] += Mr.T @ (Fn @ E[:q, :q])
        bar["E"][i][:, :q, :q] += _T(Fn) @ (Mr @ X[:q, :q])
        bar["C"][i][:, :q, :q] += Mr.T @ (Fn @ Y[:q, :q].T)
