"""(I - D')^{-T} c for deep nonlinear nets in one pass over the frontier groups (THEORY.md §3).

``NonlinearOperator.backward`` (the reference) applies a whole layer VJP per frontier group:
O(sites n^3) each, (steps + 1)(2L + 1) of them per observable. Every cotangent a group puts
on its layer is linear in that group's bars, and the substitution only ever reads it at the
coordinates of later groups (earlier in time). So ``Sweep`` keeps, per layer and site, the
sums of what the processed groups contribute,

    lambda (2n)       the source gradient,
    Gamma (2n x 2n)   M^T Q M^T of the response weights,
    H (2n x 2n)       the middle of Price's source Hessian M^T H M (``deep.site_price``),

each group adding its own (cut to the steps up to its slice, causality), and reads off only
what the next group needs: rows and columns of the memories' cotangents at one time slice,
O(P_all n) per site, and of the source covariances', M[:, slice]^T H M, O(P_all n^2). A group's
own terms cost O(P_all n^2) per site for the kernels and responses, plus the elementwise
n x n products of the responses' x-Hessian: an observable costs O(steps P_all n^2) per site
instead of O(steps n^3). Memory: about four (2n)^2 arrays per layer and site (M, the two
accumulators, M C and M E), 12.9 GiB at L = 3, n = 204 and 512 sites.
Equal to the reference to rounding (tests/test_nonlinear_matrix_free.py).
"""
from __future__ import annotations

import numpy as np

from .site_adjoint import site_adjoint
from .site_price import memory_products, source_hessian_x


class Sweep:
    """Substitution with I - D' by accumulation, for the operator ``op`` (a NonlinearOperator)."""

    def __init__(self, op):
        self.op = op
        self.products = [memory_products(ly.state) for ly in op.layers]

    def backward(self, c: dict) -> dict:
        """u = (I - D')^{-T} c, the same as ``op.backward(c)``."""
        op = self.op
        u = {name: np.zeros_like(v, dtype=float) for name, v in c.items()}
        acc = [self._zeros(ly) for ly in op.layers]
        for k in range(op.T1 - 1, -1, -1):
            for group in reversed(op.groups(k)):
                reads = self._read(acc, group, k)
                for name, mask in group.items():
                    u[name][mask] = c[name][mask] + reads.get(name, 0.0 * u[name])[mask]
                self._accumulate(acc, group, u, k)
        return u

    def _zeros(self, ly):
        S, m = ly.state.M.shape[:2]
        return {"lam": np.zeros((S, m)), "Gam": np.zeros((S, m, m)),
                "H": np.zeros((S, m, m)) if ly.price else None}

    # -- a group's own contribution to its layer --------------------------------------------
    def _accumulate(self, acc, group, u, k):
        op = self.op
        n, Pa = op.n, op.Pa
        l = op.group_layer(group, op.L)
        y = op.zeros()
        for key, mask in group.items():
            y[key] = u[key] * mask
        bars = op.layer_bars(y, l)
        if not any(np.any(v) for v in bars.values()):
            return
        ly, a = op.layers[l - 1], acc[l - 1]
        nk = (k + 1) * Pa
        keep = np.r_[0:nk, n:n + nk]
        st = ly.state.leading(nk)
        bars = {key: (v[:nk, :nk] if v.ndim == 2 else v[:nk]) for key, v in bars.items()}
        adjoint = site_adjoint(st, bars, Pa, ly.center, factors=True)
        a["lam"][:, keep] += adjoint[0]
        _add_leading(a["Gam"], adjoint[1], n, nk)
        if ly.price:
            MC, ME = self.products[l - 1]
            products = (MC[:, keep, :nk], ME[:, keep, :nk])
            _add_leading(a["H"], source_hessian_x(st, bars, Pa, ly.center, adjoint=adjoint, products=products), n, nk)

    # -- what the accumulated groups put on one group's coordinates ---------------------------
    def _read(self, acc, group, k):
        """D'^T of the accumulated groups on this group's coordinates. Phi^l, A^l are inputs of
        layer l + 1 (X = Phi^l, C = A^l + W o Phi^l), G^l, B^{l-1} of layer l - 1 (Y = G^l,
        E = B^{l-1} + W o G^l), f of every layer (through W)."""
        op = self.op
        n, rows = op.n, np.flatnonzero(op.t_of == k)
        l = op.group_layer(group, op.L)
        if "f" in group:
            return {"f": self._f(acc, rows)}
        forward = f"Phi{l}" in group
        user = l + 1 if forward else l - 1                      # the layer that reads them
        if not 1 <= user <= op.L:
            return {}
        kernel, response = (f"Phi{l}", f"A{l}") if forward else (f"G{l}", f"B{l - 1}")
        memory = self._memory_row(acc[user - 1], user, "C" if forward else "E", rows)
        price = self._price_rows(acc[user - 1], user, "u" if forward else "r", rows)
        return {kernel: self._on_slice(price, rows) + _row(memory * op.W[rows], rows, n),
                response: _row(memory, rows, n)}

    def _memory_block(self, a, l, kind, rows, cols):
        """Layer l's accumulated memory cotangent C_ (kind 'C') or E_ ('E') on ``rows`` x
        ``cols`` (index arrays): gamma0 <lambda_a F_b + Gamma terms> (``deep.site_adjoint``)."""
        op = self.op
        n, ly = op.n, op.layers[l - 1]
        st, lam, Gam, p = ly.state, a["lam"], a["Gam"], ly.state.p
        R, K = rows[:, None], cols[None, :]
        if kind == "C":                                        # C_ij acts through g_j on u_i
            part = (lam[:, rows, None] * st.g[:, None, cols] + Gam[:, R, K] * (p[2] * st.z)[:, None, cols]
                    + Gam[:, R, n + K] * p[1][:, None, cols])
        else:                                                  # E_ij acts through phi(h_j) on r_i
            part = lam[:, n + rows, None] * p[0][:, None, cols] + Gam[:, n + R, K] * p[1][:, None, cols]
        return op.g0 * np.tensordot(ly.wt, part, axes=1)

    def _memory_row(self, a, l, kind, rows):
        return self._memory_block(a, l, kind, rows, np.arange(self.op.n))

    def _memory_column(self, a, l, kind, cols):
        return self._memory_block(a, l, kind, np.arange(self.op.n), cols)

    def _price_rows(self, a, l, kind, rows):
        """Rows ``rows`` of layer l's accumulated X_ (kind 'u') or Y_ ('r'): 1/2 <M_k^T H M_k>."""
        op = self.op
        n, ly = op.n, op.layers[l - 1]
        M = ly.state.M
        Mk = M[:, :, :n] if kind == "u" else M[:, :, n:]
        left = np.swapaxes(Mk[:, :, rows], 1, 2) @ a["H"]      # (S, |rows|, 2n)
        return 0.5 * np.tensordot(ly.wt, left @ Mk, axes=1)

    def _on_slice(self, R, rows):
        """A symmetric matrix's rows ``rows`` (given) placed as those rows and columns."""
        n = self.op.n
        out = np.zeros((n, n))
        out[rows] = R
        out[:, rows] = R.T
        return out

    def _f(self, acc, cols):
        """f(k)'s cotangent: W(t, s) = eta 1[s<t] Delta(s) with dDelta = -df (training points)."""
        op = self.op
        out = np.zeros(op.n)
        for l, (ly, a) in enumerate(zip(op.layers, acc), start=1):
            Cc, Ec = self._memory_column(a, l, "C", cols), self._memory_column(a, l, "E", cols)
            Cc, Ec = Cc * op.strict[:, cols], Ec * op.weak[:, cols]
            out[cols] += -op.eta * op.train[cols] * (np.einsum("ij,ij->j", Cc, ly.X[:, cols] * op.lower[:, cols])
                                                     + np.einsum("ij,ij->j", Ec, ly.Y[:, cols] * op.lower[:, cols]))
        return out


def _add_leading(A, B, n, nk):
    """A (S, 2n, 2n) += B (S, 2nk, 2nk) on the indices (h, z) of the first nk: four block slices."""
    for a, b in ((0, 0), (n, nk)):
        for c, d in ((0, 0), (n, nk)):
            A[:, a:a + nk, c:c + nk] += B[:, b:b + nk, d:d + nk]


def _row(R, rows, n):
    """(|rows|, n) placed as rows ``rows`` of an n x n matrix."""
    out = np.zeros((n, n))
    out[rows] = R
    return out
