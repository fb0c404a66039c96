"""Response functions of the deep site process by exact pathwise derivatives (THEORY.md §2).

    gamma0 A^l(t, s)     = < d phi(h^l(t)) / d r^l(s) >         s < t  (strictly causal)
    gamma0 B^{l-1}(t, s) = < d g^l(t)      / d u^l(s) >         s <= t (equal-time part included)

Both are site averages of derivatives of the discrete recursion of ``rich_site`` at fixed order
parameters. They are computed by reverse-mode (adjoint) differentiation of that recursion:
one backward sweep from the output slice t through the stored history gives, for every site
at once, the derivative of the P outputs of slice t with respect to every source slice s <= t.
This is exact (the chain rule through the same discrete steps that produced the paths, no
finite differences) and needs O(n P^2 T) memory, where a forward tangent of all source
directions would hold O(n P^2 T^2). Price/Stein identities would instead need the inverse of
the source covariances, which are nearly singular at small eta gamma0 (consecutive slices
barely differ), so their estimators have a large variance; the pathwise derivative has none
of that.

The adjoint of one step t' (bars are adjoints, each (sites, outputs, P)):

    bar_z(t') = phi'(h(t')) bar_g(t'),         bar_h(t') = phi''(h(t')) z(t') bar_g(t')
    bar_phi(s) += CB(t', s)^T bar_z(t')         for s <= t'
    bar_h(t') += phi'(h(t')) bar_phi(t')
    bar_g(s)  += CA(t', s)^T bar_h(t')          for s < t'

and ``bar_r(t') = bar_z(t')``, ``bar_u(t') = bar_h(t')`` are the derivatives sought. The
seed is the identity at ``bar_phi(t)`` (for A) or ``bar_g(t)`` (for B). The equal-time part of
B comes out of step t' = t: ``phi''(h(t)) z(t)`` plus the path through CB(t, t) = gamma0 B^l(t, t).
"""
from __future__ import annotations

import numba
import numpy as np

from .rich_site import LayerPaths

# Sites per backward sweep chunk: keeps the two adjoint histories near 16 MB.
CHUNK_BYTES = 16 * 2**20


BACKENDS = ("numba", "numpy")


def site_response(paths: LayerPaths, CA: np.ndarray, CB: np.ndarray, t: int, seed: str,
                  weights: np.ndarray, backend: str = "numba") -> np.ndarray:
    """< d out(t) / d source(s) > for s = 0..t, as (P_out, t+1, P_src).

    ``seed='phi'``: out = phi(h(t)), source r (gives gamma0 A(t, .)); ``seed='g'``: out = g(t),
    source u (gives gamma0 B^{l-1}(t, .)). ``CA``, ``CB``: the layer's memory kernels.
    ``backend``: 'numba' (a compiled loop over sites, no BLAS: the products have inner
    dimension P, too small for BLAS threads to pay) or 'numpy' (the reference, batched GEMMs).
    """
    if seed not in ("phi", "g"):
        raise ValueError(f"seed must be 'phi' or 'g', got {seed!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    n, _, P = paths.h.shape
    if backend == "numba":
        dphi, ddphi_z = paths.derivative_factors(slice(None))
        flat = lambda M: np.ascontiguousarray(M[:t + 1, :, :t + 1]).reshape(t + 1, P, (t + 1) * P)  # noqa: E731
        parts = _sweep_numba(dphi, ddphi_z, flat(CA), flat(CB), weights, t, seed == "phi",
                             4 * numba.get_num_threads())
        return parts.sum(axis=0)
    out = np.zeros((P, t + 1, P))
    chunk = max(1, CHUNK_BYTES // (2 * 8 * P * P * (t + 1)))
    eye = np.eye(P)
    CAf = [CA[k, :, :k].reshape(P, k * P) for k in range(t + 1)]
    CBf = [CB[k, :, :k + 1].reshape(P, (k + 1) * P) for k in range(t + 1)]
    for lo in range(0, n, chunk):
        sites = slice(lo, min(n, lo + chunk))
        m = sites.stop - sites.start
        w = weights[sites]
        dphi, ddphi_z = paths.derivative_factors(sites)
        bar_g = np.zeros((m, P, t + 1, P))    # (site, output, time, point)
        bar_phi = np.zeros((m, P, t + 1, P))
        if seed == "phi":
            bar_phi[:, :, t, :] = eye
        else:
            bar_g[:, :, t, :] = eye
        for k in range(t, -1, -1):
            bg = bar_g[:, :, k]
            bar_z = dphi[:, None, k] * bg
            bar_h = ddphi_z[:, None, k] * bg
            if seed == "phi" and k < t:
                out[:, k] += np.einsum("i,iab->ab", w, bar_z)
            bar_phi[:, :, :k + 1] += (bar_z.reshape(m * P, P) @ CBf[k]).reshape(m, P, k + 1, P)
            bar_h += dphi[:, None, k] * bar_phi[:, :, k]
            if seed == "g":
                out[:, k] += np.einsum("i,iab->ab", w, bar_h)
            if k > 0:
                bar_g[:, :, :k] += (bar_h.reshape(m * P, P) @ CAf[k]).reshape(m, P, k, P)
    return out


@numba.njit(parallel=True, cache=True)
def _sweep_numba(dphi, ddphi_z, CA, CB, weights, t, seed_phi, n_parts):
    """The adjoint steps above, site by site; ``n_parts`` partial sums, one per site block.

    ``dphi``, ``ddphi_z``: (n, steps+1, P), read up to step t. ``CA``, ``CB`` are
    (t+1, P, (t+1) P): rows of the memory kernels flattened over (s, nu),
    so the innermost loops run over one contiguous row (vectorised by LLVM). The adjoints
    hold all P output directions: ``bar_g[a, s P + nu]``.
    """
    n, P = dphi.shape[0], dphi.shape[2]
    T1 = t + 1
    out = np.zeros((n_parts, P, T1, P))
    for part in numba.prange(n_parts):
        bar_g = np.zeros((P, T1 * P))
        bar_phi = np.zeros((P, T1 * P))
        bar_z = np.zeros((P, P))
        bar_h = np.zeros((P, P))
        for i in range(part * n // n_parts, (part + 1) * n // n_parts):
            w = weights[i]
            bar_g[:] = 0.0
            bar_phi[:] = 0.0
            for a in range(P):
                if seed_phi:
                    bar_phi[a, t * P + a] = 1.0
                else:
                    bar_g[a, t * P + a] = 1.0
            for k in range(t, -1, -1):
                for a in range(P):
                    for mu in range(P):
                        bg = bar_g[a, k * P + mu]
                        bar_z[a, mu] = dphi[i, k, mu] * bg
                        bar_h[a, mu] = ddphi_z[i, k, mu] * bg
                if seed_phi and k < t:
                    for a in range(P):
                        for mu in range(P):
                            out[part, a, k, mu] += w * bar_z[a, mu]
                m = (k + 1) * P
                for a in range(P):
                    for mu in range(P):
                        bz = bar_z[a, mu]
                        if bz != 0.0:
                            for j in range(m):
                                bar_phi[a, j] += bz * CB[k, mu, j]
                for a in range(P):
                    for mu in range(P):
                        bar_h[a, mu] += dphi[i, k, mu] * bar_phi[a, k * P + mu]
                if not seed_phi:
                    for a in range(P):
                        for mu in range(P):
                            out[part, a, k, mu] += w * bar_h[a, mu]
                m = k * P
                for a in range(P):
                    for mu in range(P):
                        bh = bar_h[a, mu]
                        if bh != 0.0:
                            for j in range(m):
                                bar_g[a, j] += bh * CA[k, mu, j]
    return out
