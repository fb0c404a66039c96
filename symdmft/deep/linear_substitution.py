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

import numpy as np

from .linear_operator import tangent_inputs


def _T(Z):
    return np.swapaxes(Z, -1, -2)


class Substitution:
    """Row-by-row substitution with I - D' at the saddle held by ``op`` (an ActionOperator)."""

    def __init__(self, op):
        self.op, self.L, self.n, self.p, self.T1 = op, op.L, op.n, op.Pa, op.T1
        self.g2, self.eta, self.center = op.g0**2, op.eta, op.center
        self.layers = op.layers
        self.lower, self.train = op.geo["lower"], op.geo["train"]

    def _zeros(self, K):
        return np.zeros((K, self.n, self.n))

    # -- (I - D') x = b --------------------------------------------------------------------
    def forward(self, b):
        K, L, p, g2 = b["f"].shape[0], self.L, self.p, self.g2
        zero = self._zeros(K)
        x = {name: np.zeros_like(a) for name, a in b.items()}
        dW = self._zeros(K)
        t = {key: [self._zeros(K) for _ in range(L)] for key in "CEMNSR"}
        dF0 = None
        for k in range(self.T1):
            r, lo, q = slice(k * p, (k + 1) * p), k * p, (k + 1) * p
            for l in range(1, L + 1):                                   # forward chain
                ly, i = self.layers[l - 1], l - 1
                dX, dY, dAb, _ = tangent_inputs(x, l, L, zero)
                C, E, M, S, X, Y, W = ly.C, ly.E, ly.M, ly.S, ly.X, ly.Y, ly.W
                dC, dE, dM, dS = t["C"][i], t["E"][i], t["M"][i], t["S"][i]
                dC[:, r, :lo] = dAb[:, r, :lo] + dX[:, r, :lo] * W[r, :lo] + X[r, :lo] * dW[:, r, :lo]
                dM[:, r, :q] = g2 * (dC[:, r, :lo] @ (E[:lo, :lo] @ M[:lo, :q])
                                     + C[r, :lo] @ dE[:, :lo, :lo] @ M[:lo, :q]
                                     + (C[r, :lo] @ E[:lo, :lo]) @ dM[:, :lo, :q])
                dS[:, r, :q] = dX[:, r, :q] + g2 * (dC[:, r, :lo] @ (Y[:lo, :lo] @ C[:q, :lo].T)
                                                    + C[r, :lo] @ dY[:, :lo, :lo] @ C[:q, :lo].T
                                                    + (C[r, :lo] @ Y[:lo, :lo]) @ _T(dC[:, :q, :lo]))
                dS[:, :lo, r] = dX[:, :lo, r] + g2 * (dC[:, :lo, :lo] @ (Y[:lo, :lo] @ C[r, :lo].T)
                                                      + C[:lo, :lo] @ (dY[:, :lo, :lo] @ C[r, :lo].T)
                                                      + (C[:lo, :lo] @ Y[:lo, :lo]) @ _T(dC[:, r, :lo]))
                self._kernel_rows(x[f"Phi{l}"], b[f"Phi{l}"], dM, dS, M, S, r, lo, q)
                if l < L:
                    x[f"A{l}"][:, r, :lo] = (dM[:, r, :q] @ C[:q, :lo] + M[r, :q] @ dC[:, :q, :lo]
                                             + b[f"A{l}"][:, r, :lo])
            for l in range(L, 0, -1):                                   # backward chain
                ly, i = self.layers[l - 1], l - 1
                dX, dY, _, dBb = tangent_inputs(x, l, L, zero)
                C, E, N, R, X, Y, W = ly.C, ly.E, ly.N, ly.R, ly.X, ly.Y, ly.W
                dC, dE, dN, dR = t["C"][i], t["E"][i], t["N"][i], t["R"][i]
                dE[:, r, :lo] = dBb[:, r, :lo] + dY[:, r, :lo] * W[r, :lo] + Y[r, :lo] * dW[:, r, :lo]
                dE[:, r, r] = dBb[:, r, r]                              # equal-time B
                dN[:, r, :q] = g2 * (dE[:, r, :q] @ (C[:q, :lo] @ N[:lo, :q])
                                     + E[r, :lo] @ dC[:, :lo, :lo] @ N[:lo, :q]
                                     + (E[r, :lo] @ C[:lo, :lo]) @ dN[:, :lo, :q])
                dR[:, r, :q] = dY[:, r, :q] + g2 * (dE[:, r, :q] @ (X[:q, :lo] @ E[:q, :lo].T)
                                                    + E[r, :lo] @ dX[:, :lo, :lo] @ E[:q, :lo].T
                                                    + (E[r, :lo] @ X[:lo, :q]) @ _T(dE[:, :q, :q]))
                dR[:, :lo, r] = dY[:, :lo, r] + g2 * (dE[:, :lo, :q] @ (X[:q, :lo] @ E[r, :lo].T)
                                                      + E[:lo, :lo] @ (dX[:, :lo, :lo] @ E[r, :lo].T)
                                                      + (E[:lo, :lo] @ X[:lo, :q]) @ _T(dE[:, r, :q]))
                self._kernel_rows(x[f"G{l}"], b[f"G{l}"], dN, dR, N, R, r, lo, q)
                if l > 1:
                    x[f"B{l - 1}"][:, r, :q] = (dN[:, r, :q] @ E[:q, :q] + N[r, :q] @ dE[:, :q, :q]
                                                + b[f"B{l - 1}"][:, r, :q])
            dF = self._output_row(x, t, zero, r, lo, q)                 # f(k), correlator rule
            if k == 0:
                dF0 = dF
            x["f"][:, r] = (dF - dF0 if self.center else dF) + b["f"][:, r]
            dW[:, :, r] = -self.eta * self.lower[:, r] * (self.train[r] * x["f"][:, r])[:, None, :]
        return x

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
        K, L, p, g2 = c["f"].shape[0], self.L, self.p, self.g2
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
                ly, i = self.layers[l - 1], l - 1
                C, E, N, R, X, Y, W = ly.C, ly.E, ly.N, ly.R, ly.X, ly.Y, ly.W
                bC, bE, bN, bR = bar["C"][i], bar["E"][i], bar["N"][i], bar["R"][i]
                bX, bY, _, bBb = tangent_inputs(u, l, L, sink)
                if l > 1:
                    ub = u[f"B{l - 1}"][:, r, :q]
                    bN[:, r, :q] += ub @ E[:q, :q].T
                    bE[:, :q, :q] += N[r, :q].T @ ub
                self._kernel_rows_T(u[f"G{l}"], bN, bR, N, R, r, lo, q)
                Rr, Rc = bR[:, r, :q], bR[:, :lo, r]
                bY[:, r, :q] += Rr
                bY[:, :lo, r] += Rc
                bE[:, r, :q] += g2 * Rr @ (E[:q, :lo] @ X[:lo, :q])
                bX[:, :lo, :lo] += g2 * E[r, :lo].T @ (Rr @ E[:q, :lo])
                bE[:, :q, :q] += g2 * _T(Rr) @ (E[r, :lo] @ X[:lo, :q])
                bE[:, :lo, :q] += g2 * Rc @ (E[r, :lo] @ X[:lo, :q])
                bX[:, :lo, :lo] += g2 * E[:lo, :lo].T @ Rc @ E[r, :lo]
                bE[:, r, :q] += g2 * _T(Rc) @ (E[:lo, :lo] @ X[:lo, :q])
                Nr = bN[:, r, :q]
                bE[:, r, :q] += g2 * Nr @ (C[:q, :lo] @ N[:lo, :q]).T
                bC[:, :lo, :lo] += g2 * E[r, :lo].T @ (Nr @ N[:lo, :q].T)
                bN[:, :lo, :q] += g2 * (E[r, :lo] @ C[:lo, :lo]).T @ Nr
                Er = bE[:, r, :lo]
                bBb[:, r, :lo] += Er
                bBb[:, r, r] += bE[:, r, r]
                bY[:, r, :lo] += Er * W[r, :lo]
                bW[:, r, :lo] += Er * Y[r, :lo]
            for l in range(L, 0, -1):                                   # forward chain, reversed
                ly, i = self.layers[l - 1], l - 1
                C, E, M, S, X, Y, W = ly.C, ly.E, ly.M, ly.S, ly.X, ly.Y, ly.W
                bC, bE, bM, bS = bar["C"][i], bar["E"][i], bar["M"][i], bar["S"][i]
                bX, bY, bAb, _ = tangent_inputs(u, l, L, sink)
                if l < L:
                    ua = u[f"A{l}"][:, r, :lo]
                    bM[:, r, :q] += ua @ C[:q, :lo].T
                    bC[:, :q, :lo] += M[r, :q].T @ ua
                self._kernel_rows_T(u[f"Phi{l}"], bM, bS, M, S, r, lo, q)
                Sr, Sc = bS[:, r, :q], bS[:, :lo, r]
                bX[:, r, :q] += Sr
                bX[:, :lo, r] += Sc
                bC[:, r, :lo] += g2 * Sr @ (C[:q, :lo] @ Y[:lo, :lo])
                bY[:, :lo, :lo] += g2 * C[r, :lo].T @ (Sr @ C[:q, :lo])
                bC[:, :q, :lo] += g2 * _T(Sr) @ (C[r, :lo] @ Y[:lo, :lo])
                bC[:, :lo, :lo] += g2 * Sc @ (C[r, :lo] @ Y[:lo, :lo])
                bY[:, :lo, :lo] += g2 * C[:lo, :lo].T @ Sc @ C[r, :lo]
                bC[:, r, :lo] += g2 * _T(Sc) @ (C[:lo, :lo] @ Y[:lo, :lo])
                Mr = bM[:, r, :q]
                bC[:, r, :lo] += g2 * Mr @ (E[:lo, :lo] @ M[:lo, :q]).T
                bE[:, :lo, :lo] += g2 * C[r, :lo].T @ (Mr @ M[:lo, :q].T)
                bM[:, :lo, :q] += g2 * (C[r, :lo] @ E[:lo, :lo]).T @ Mr
                Cr = bC[:, r, :lo]
                bAb[:, r, :lo] += Cr
                bX[:, r, :lo] += Cr * W[r, :lo]
                bW[:, r, :lo] += Cr * X[r, :lo]
        return u

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
        M, N, Q, X, Y, E, C = ly.M, ly.N, ly.Q, ly.X, ly.Y, ly.E, ly.C
        Mr, Nr = M[r, :q], N[r, :q]
        bar["M"][i][:, r, :q] += (bF[:, :, None] * Nr) @ Q[:q, :q].T
        bar["N"][i][:, r, :q] += bF[:, :, None] * (Mr @ Q[:q, :q])
        Fn = bF[:, :, None] * Nr                                        # dQ's cotangent = Mr^T Fn
        if L > 1:
            u[f"Phi{L - 1}"][:, :q, :q] += Mr.T @ (Fn @ E[:q, :q])
        bar["E"][i][:, :q, :q] += _T(Fn) @ (Mr @ X[:q, :q])
        bar["C"][i][:, :q, :q] += Mr.T @ (Fn @ Y[:q, :q].T)
