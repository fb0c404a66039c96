"""The cotangent of a layer's source covariances by Price's theorem (THEORY.md §3, deep nets).

A layer's sources are u ~ N(0, X), r ~ N(0, Y) with X = Phi^{l-1}, Y = G^{l+1} order
parameters, so ``D'^T`` also needs d<O>/dX for the output pairing O of ``deep.site_adjoint``.
Price's theorem gives it without the inverse of X (nearly singular: consecutive steps barely
differ) and without differentiating its root:

    d<O> / dX_kl = 1/2 < d_{u_k} d_{u_l} O >        (X_kl and X_lk separate coordinates)

For the kernels and f this needs second source derivatives of the fields; for the responses
(O contains d phi / d r and d g / d u) third ones: the jets of ``deep.site_jets``, the
same ones the dense layer Hessian uses for its w-X and X-theta blocks. They cost ~(2n)^5
flops per site: this is the reference for small problems, and the part of a matrix-free
nonlinear propagator that does not scale (docs/deep_fluctuations.md).
"""
from __future__ import annotations

import numpy as np

from .site_action import default_chunk
from .site_adjoint import center_f_cotangent
from .site_jets import site_jets


# Jets kept between calls while they fit in this many bytes (else recomputed per call).
KEEP_BYTES = 2**30


class PriceJets:
    """The source jets of one layer's sites, kept (when they fit in KEEP_BYTES) for repeated
    cotangents: ``cotangents(bars)`` is linear in ``bars``, the jets are not."""

    def __init__(self, u, r, C, E, g0, Pa, phis, wt, center=False, kinds=("u", "r")):
        self.args, self.wt, self.center, self.kinds = (u, r, C, E, g0, Pa, phis), wt, center, tuple(kinds)
        n, S = u.shape[1], u.shape[0]
        self.chunk = default_chunk(n)
        size = 8 * S * n * (3 * (2 * n) ** 2 + 2 * len(self.kinds) * n**3)
        self.kept = [self._jets(lo) for lo in range(0, S, self.chunk)] if size <= KEEP_BYTES else None

    def _jets(self, lo):
        u, r, C, E, g0, Pa, phis = self.args
        part = slice(lo, lo + self.chunk)
        return site_jets(u[part], r[part], C, E, g0, Pa, phis, third=self.kinds), self.wt[part]

    def cotangents(self, bars: dict) -> dict:
        """{'u': X_, 'r': Y_} (n, n): 1/2 sum_s wt_s d_k d_l O_s over each kind's sources."""
        n = self.args[0].shape[1]
        out = {kind: np.zeros((n, n)) for kind in self.kinds}
        parts = self.kept or (self._jets(lo) for lo in range(0, self.args[0].shape[0], self.chunk))
        for J, wt in parts:
            for kind, val in _price_chunk(J, n, self.args[4], self.args[5], wt, bars, self.center, self.kinds).items():
                out[kind] += val
        return out


def price_cotangents(u, r, C, E, g0, Pa, phis, wt, bars: dict, center=False, kinds=("u", "r")) -> dict:
    """{'u': X_, 'r': Y_} (n, n) each: 1/2 sum_s wt_s d_k d_l O_s over the sources of each kind
    in ``kinds``; ``bars`` as in ``site_adjoint.layer_vjp``; ``phis`` to the 4th derivative.
    Sites are taken ``site_action.default_chunk(n)`` at a time (the third jets are n^4 each)."""
    return PriceJets(u, r, C, E, g0, Pa, phis, wt, center, kinds).cotangents(bars)


def _price_chunk(J, n, g0, Pa, wt, bars, center, kinds):
    zero = np.zeros((n, n))
    Phi_, G_, A_, B_ = (bars.get(k, zero) for k in ("Phi", "G", "A", "B"))
    f_ = bars.get("f", np.zeros(n))
    if center:
        f_ = center_f_cotangent(f_, Pa)
    out = {}
    for kind in kinds:
        K = slice(0, n) if kind == "u" else slice(n, 2 * n)

        def quadratic(F, W):
            """sum_ab W_ab d_k d_l (F_a F_b) per site: (S, n, n)."""
            Ws = W + W.T
            F1, F2 = F[1][..., K], F[2][..., K, K]
            return np.einsum("sa,sakl->skl", F[0] @ Ws, F2) + np.einsum("sak,ab,sbl->skl", F1, Ws, F1)

        d2 = quadratic(J.phi, Phi_) + quadratic(J.g, G_)
        Z, P = J.zj, J.phi
        Z1, P1 = Z[1][..., K], P[1][..., K]
        d2 += np.einsum("a,sakl->skl", f_, Z[2][..., K, K] * P[0][:, :, None, None]
                        + Z[0][:, :, None, None] * P[2][..., K, K]
                        + Z1[:, :, :, None] * P1[:, :, None, :] + Z1[:, :, None, :] * P1[:, :, :, None]) / g0
        phi3, g3 = J.third[kind]                             # d_k d_l d_{r_i} phi_j, d_k d_l d_{u_i} g_j
        d2 += np.einsum("ji,sjkli->skl", A_, phi3) + np.einsum("ji,sjkli->skl", B_, g3)
        out[kind] = 0.5 * np.tensordot(wt, d2, axes=1)
    return out
