"""The responses' x-Hessian of ``deep.site_price`` as one fused loop per site.

``site_price._response_hessian`` writes it as ~40 NumPy elementwise products of (sites, n, n)
slices, transposed half the time: memory-bound, and most of the matrix-free nonlinear
propagator's time (L = 3, P = 4, T = 8, 1024 sites: 18 of 60 s). Here each entry is formed
once, in the same expressions, and symmetrised into the output:

    out[a, b] += gamma0^2 (Y[a, b] + Y[b, a]) + gamma0 (X[a, b] + X[b, a])

with a, b over x = (h_0..h_{n-1}, z_0..z_{n-1}). tests/test_site_adjoint.py checks it against
the NumPy expressions.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def add_response_hessian(MUh, MU2, NUh, NU2, Mqa, Mqb, g0, out):
    """``out`` (S, 2n, 2n) += the symmetrised Y and X terms; inputs (S, 2n, n) (module docstring)."""
    S, m, n = MUh.shape
    g2 = g0 * g0
    for s in numba.prange(S):
        Y = np.empty((m, m))
        X = np.empty((m, m))
        for j in range(n):
            for q in range(n):
                muh_h, muh_z = MUh[s, j, q], MUh[s, n + j, q]
                mu2_h, mu2_z = MU2[s, j, q], MU2[s, n + j, q]
                nuh_h, nuh_z = NUh[s, q, j], NUh[s, n + q, j]
                nu2_h, nu2_z = NU2[s, q, j], NU2[s, n + q, j]
                qa_h, qa_z = Mqa[s, q, j], Mqa[s, n + q, j]
                qb_h, qb_z = Mqb[s, q, j], Mqb[s, n + q, j]
                Y[j, q] = muh_h * nuh_h + mu2_h * nuh_z + muh_z * nu2_h + mu2_z * nu2_z
                Y[j, n + q] = mu2_h * nuh_h + mu2_z * nu2_h
                Y[n + j, q] = muh_h * nu2_h + mu2_h * nu2_z
                Y[n + j, n + q] = mu2_h * nu2_h
                X[j, q] = qa_h * muh_h + qb_h * muh_z + qa_z * mu2_h + qb_z * mu2_z
                X[j, n + q] = qa_h * mu2_h + qb_h * mu2_z
                X[n + j, q] = qb_h * muh_h + qb_z * mu2_h
                X[n + j, n + q] = qb_h * mu2_h
        for a in range(m):
            for b in range(m):
                out[s, a, b] += g2 * (Y[a, b] + Y[b, a]) + g0 * (X[a, b] + X[b, a])
    return out
