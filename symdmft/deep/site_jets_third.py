"""Third source derivatives of a deep layer's site, fused loops (THEORY.md §3; ``deep.site_jets``).

The X-theta blocks of a layer's Hessian (Price's theorem for a source covariance that is an
order parameter, ``deep.site_action``) need, for k, l over one kind of source (u or r),

    d_k d_l d_{u_i} g_j       (theta = C_ij: the memory C shifts u_i by gamma0 g_j)
    d_k d_l d_{r_i} phi(h_j)  (theta = E_ij: E shifts r_i by gamma0 phi(h_j)),

from the site's first and second jets x_a, x_ab and its third x_kla = gamma0 R K3 (module
docstring of ``deep.site_jets``). Written as NumPy broadcasts these made ~30 temporaries of
shape (sites, n, n, n, 2n) and took 2/3 of the dense tanh propagator (L = 3, n = 9: 16 of
25.7 s); here each entry is one pass of scalar arithmetic, in two kernels around the one BLAS
product per site that remains (R K3):

* ``third_fields``: the fields K3 acts through, before the memories:
  top = phi'''' z hk hl ha + phi''' (hk hl za + hk zl ha + zk hl ha)
        + sum over (v, w) in ((kl, a), (ka, l), (la, k)) of phi''' z vh wh + phi'' (vh wz + vz wh),
  bot = phi''' hk hl ha + sum over the same pairs of phi'' vh wh;
* ``third_outputs``: the chain rule to phi(h_j) (a over r) and g_j = phi'(h_j) z_j (a over u).

Only the (field, source) pairs the memory entries pair up are formed: half of the NumPy
version's third jets were never read.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def third_fields(p, z, x1, x2, k0):
    """(S, 2n, n, n, 2n) over (site, field, k, l, source a), k, l = k0 + 0..n-1: top on the
    first n fields (C acts on it), bot on the last n (E acts on it).

    ``p``: (5, S, n) phi and its first four derivatives at h; ``z``: (S, n); ``x1``: (S, 2n, 2n)
    first jets (fields h then z, sources u then r); ``x2``: (S, 2n, 2n, 2n) second jets.
    """
    S, n = z.shape
    m = 2 * n
    out = np.empty((S, m, n, n, m))
    for s in numba.prange(S):
        for j in range(n):
            p2, p3, p4, zj = p[2, s, j], p[3, s, j], p[4, s, j], z[s, j]
            for k in range(n):
                hk, zk = x1[s, j, k0 + k], x1[s, n + j, k0 + k]
                for l in range(n):
                    hl, zl = x1[s, j, k0 + l], x1[s, n + j, k0 + l]
                    hkl, zkl = x2[s, j, k0 + k, k0 + l], x2[s, n + j, k0 + k, k0 + l]
                    for a in range(m):
                        ha, za = x1[s, j, a], x1[s, n + j, a]
                        hka, zka = x2[s, j, k0 + k, a], x2[s, n + j, k0 + k, a]
                        hla, zla = x2[s, j, k0 + l, a], x2[s, n + j, k0 + l, a]
                        hhh = hk * hl * ha
                        pair_hh = hkl * ha + hka * hl + hla * hk
                        pair_hz = hkl * za + zkl * ha + hka * zl + zka * hl + hla * zk + zla * hk
                        out[s, j, k, l, a] = (p4 * zj * hhh + p3 * (hk * hl * za + hk * zl * ha + zk * hl * ha)
                                              + p3 * zj * pair_hh + p2 * pair_hz)
                        out[s, n + j, k, l, a] = p3 * hhh + p2 * pair_hh
    return out


@numba.njit(parallel=True, cache=True)
def third_outputs(p, z, x1, x2, x3, k0):
    """(phi3, g3), each (S, n, n, n, n): phi3[s, j, k, l, i] = d_k d_l d_{r_i} phi(h_j) and
    g3[s, j, k, l, i] = d_k d_l d_{u_i} g_j, k, l = k0 + 0..n-1; ``x3`` (S, 2n, n, n, 2n) the
    third jets of (h, z) over (k, l, a). Other arguments as in ``third_fields``."""
    S, n = z.shape
    phi3 = np.empty((S, n, n, n, n))
    g3 = np.empty((S, n, n, n, n))
    for s in numba.prange(S):
        for j in range(n):
            p1, p2, p3, p4, zj = p[1, s, j], p[2, s, j], p[3, s, j], p[4, s, j], z[s, j]
            for k in range(n):
                hk, zk = x1[s, j, k0 + k], x1[s, n + j, k0 + k]
                for l in range(n):
                    hl, zl = x1[s, j, k0 + l], x1[s, n + j, k0 + l]
                    hkl, zkl = x2[s, j, k0 + k, k0 + l], x2[s, n + j, k0 + k, k0 + l]
                    for i in range(n):
                        a = n + i                                         # r_i: phi's entries
                        ha, hka, hla = x1[s, j, a], x2[s, j, k0 + k, a], x2[s, j, k0 + l, a]
                        phi3[s, j, k, l, i] = (p3 * hk * hl * ha + p2 * (hkl * ha + hka * hl + hla * hk)
                                               + p1 * x3[s, j, k, l, a])
                        a = i                                             # u_i: g's entries
                        ha, za = x1[s, j, a], x1[s, n + j, a]
                        hka, zka = x2[s, j, k0 + k, a], x2[s, n + j, k0 + k, a]
                        hla, zla = x2[s, j, k0 + l, a], x2[s, n + j, k0 + l, a]
                        dphi3 = (p4 * hk * hl * ha + p3 * (hkl * ha + hka * hl + hla * hk)
                                 + p2 * x3[s, j, k, l, a])
                        dkl, dka, dla = p3 * hk * hl + p2 * hkl, p3 * hk * ha + p2 * hka, p3 * hl * ha + p2 * hla
                        g3[s, j, k, l, i] = (dphi3 * zj + dkl * za + dka * zl + dla * zk
                                             + p2 * (zkl * ha + zka * hl + zla * hk) + p1 * x3[s, n + j, k, l, a])
    return phi3, g3
