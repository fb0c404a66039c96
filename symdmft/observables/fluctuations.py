"""Finite-width covariances from the propagator (THEORY.md §3, prediction-only form).

At finite N, ``f = <psi_f>_Delta + eps_f/sqrt(N)`` and ``dDelta = -df`` on training
points, so ``df = (I + D E)^{-1} eps_f = R eps_f``; kernels move as
``dK = eps_K + D_K dDelta = eps_K + Gm eps_f``. The generated ``propagate`` returns the
columns of R (``dF``) and of Gm (``dK``); this module assembles

    N Cov(f)   = R kappa_f R^T,         kappa_f = Cov_site(psi_f, psi_f)
    N Var(K_o) = Var_site(psi_o + Gm_o psi_f)

with site covariances as weighted sums over the quadrature rule, in chunks of sites.
"""
from __future__ import annotations

import numpy as np

from ..model.site import with_ntk


def response_matrix(dF: np.ndarray, n_point: int) -> np.ndarray:
    """R as (t, mu, s, nu): dF columns for training sources, identity for test sources."""
    n_dir, n_t, _ = dF.shape
    n_train = n_dir // n_t
    R = np.zeros((n_t, n_point, n_t, n_point))
    R[:, :, :, :n_train] = dF.reshape(n_t, n_train, n_t, n_point).transpose(2, 3, 0, 1)
    for nu in range(n_train, n_point):
        R[np.arange(n_t), nu, np.arange(n_t), nu] = 1.0
    return R


def kernel_gains(dK: np.ndarray, n_point: int) -> np.ndarray:
    """Gm as (kernel, t, mu, nu, s, point): kernel response to a unit eps_f(s, point)."""
    n_dir, n_t, n_k, P, _ = dK.shape
    G = np.zeros((n_k, n_t, P, P, n_t, n_point))
    G[..., :P] = dK.reshape(n_t, P, n_t, n_k, P, P).transpose(3, 2, 4, 5, 0, 1)
    return G


def site_psi(features, out0, center, kx_train, kernel_names):
    """Per-site observables of one chunk: psi_f (m, t, point) and kernels (m, t, P, P)."""
    phi, g, out = (np.moveaxis(a, 1, 0) for a in features)      # (m, t, point)
    psi_f = out - out0[:, None, :] if center else out
    P = kx_train.shape[0]
    by_feature = {"phi": phi[..., :P], "g": g[..., :P]}
    psi_k = {}
    for name, feature in kernel_names:
        x = by_feature[feature]
        psi_k[name] = x[..., :, None] * x[..., None, :]
    return psi_f, with_ntk(psi_k, kx_train)


def all_gains(dK, n_point, kx_train, kernel_names) -> dict:
    """Gm for every kernel, the NTK's (K = Phi1 + G1 * Kx, THEORY.md §1) included."""
    gains = dict(zip([n for n, _ in kernel_names], kernel_gains(dK, n_point)))
    return with_ntk(gains, kx_train, axes=(1, 2))      # gains are (t, mu, nu, s, point)


def site_chunks(module, H, W, gamma0, center, kx_train, kernel_names, chunk: int = 4096):
    """Yield (slice, psi_f, psi_k) over chunks of sites (bounded memory)."""
    n_site = H.shape[1]
    for lo in range(0, n_site, chunk):
        sl = slice(lo, min(lo + chunk, n_site))
        feats = module.site_features(np.ascontiguousarray(H[:, sl]), np.ascontiguousarray(W[:, sl]), gamma0)
        psi_f, psi_k = site_psi(feats, feats[2][0], center, kx_train, kernel_names)
        yield sl, psi_f, psi_k


def fluctuations(module, H, W, weights, f, kernel_means, R, gains, gamma0, center, kx_train,
                 kernel_names):
    """(N Cov f as (t, mu, s, nu), {kernel: N Var as (t, P, P)}) from the site ensemble."""
    n_t, n_site, n_point = H.shape
    nf, P = n_t * n_point, kx_train.shape[0]
    kappa_f = np.zeros((nf, nf))
    var = {name: 0.0 for name in gains}
    for sl, psi_f, psi_k in site_chunks(module, H, W, gamma0, center, kx_train, kernel_names):
        w = weights[sl]
        zf = (psi_f - f[None]).reshape(-1, nf)
        kappa_f += (zf * w[:, None]).T @ zf
        # z = the kernel's fluctuation at this site, linear in (psi_k, psi_f): computed for
        # the site kernels by BLAS, and for the NTK by its linear rule (no third product)
        z = {name: (psi_k[name] - kernel_means[name][None])
             + (zf @ gains[name].reshape(-1, nf).T).reshape(-1, n_t, P, P)
             for name, _ in kernel_names}
        for name, zk in with_ntk(z, kx_train).items():
            var[name] = var[name] + np.einsum("i,itab->tab", w, zk * zk).reshape(-1)
    R2 = R.reshape(nf, nf)
    f_cov = (R2 @ kappa_f @ R2.T).reshape(n_t, n_point, n_t, n_point)
    return f_cov, {name: v.reshape(n_t, P, P) for name, v in var.items()}
