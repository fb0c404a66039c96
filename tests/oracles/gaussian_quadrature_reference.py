"""Numerical references for the two-layer site process, P = 1 (numpy only, no symdmft).

Site process (THEORY.md section 2, two-layer form), driven by a given error-signal path
Delta(0..T-1), activation phi with derivative dphi (default linear):

    h(k+1) = h(k) + eta gamma0 w(k) Kx Delta(k) phi'(h(k))
    w(k+1) = w(k) + eta gamma0 Delta(k) phi(h(k))
    h(0) = u ~ N(0, Kx),  w(0) = w0 ~ N(0, 1)
    psi(k) = w(k) phi(h(k)) / gamma0

* ``site_paths(u, w0, ...)``: iterate the process on given arrays of sources.
* ``quadrature_site_moments``: 2D tensor Gauss-Hermite (probabilists', numpy.polynomial.hermite_e)
  mean and covariance of psi. For phi linear, psi(t) psi(s) is a polynomial of degree 4 in
  (u, w0), so ``n_nodes >= 3`` is exact (n nodes integrate degree <= 2n - 1).
* ``mc_site_moments``: brute-force Monte Carlo (default 10^6 samples, fixed seed) of the same.
"""
from __future__ import annotations

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

__all__ = ["site_paths", "quadrature_site_moments", "mc_site_moments"]


def _linear(h):
    return h


def _one(h):
    return np.ones_like(h)


def site_paths(u, w0, Delta, eta, gamma0, Kx=1.0, phi=_linear, dphi=_one):
    """psi(k) for k = 0..T on arrays of sources; returns array of shape (T+1,) + u.shape."""
    h = np.asarray(u, float).copy()
    w = np.asarray(w0, float).copy()
    psi = [w * phi(h) / gamma0]
    for d in Delta:
        h, w = (h + eta * gamma0 * w * Kx * d * dphi(h),
                w + eta * gamma0 * d * phi(h))
        psi.append(w * phi(h) / gamma0)
    return np.stack(psi)


def quadrature_site_moments(Delta, eta, gamma0, Kx=1.0, n_nodes=8, phi=_linear, dphi=_one):
    """Gauss-Hermite ``(mean, cov)`` of psi(0..T): shapes (T+1,), (T+1, T+1)."""
    z, wts = hermegauss(n_nodes)
    wts = wts / wts.sum()                       # normalise to a probability measure
    Z1, Z2 = np.meshgrid(z, z, indexing="ij")
    W = np.outer(wts, wts)
    psi = site_paths(np.sqrt(Kx) * Z1, Z2, Delta, eta, gamma0, Kx, phi, dphi)
    psi = psi.reshape(psi.shape[0], -1)
    W = W.ravel()
    mean = psi @ W
    c = psi - mean[:, None]
    cov = (c * W) @ c.T
    return mean, cov


def mc_site_moments(Delta, eta, gamma0, Kx=1.0, n_samples=10 ** 6, seed=0,
                    phi=_linear, dphi=_one):
    """Monte Carlo ``(mean, cov, stderr_mean)`` of psi(0..T) from ``n_samples`` site draws."""
    rng = np.random.default_rng(seed)
    u = np.sqrt(Kx) * rng.standard_normal(n_samples)
    w0 = rng.standard_normal(n_samples)
    psi = site_paths(u, w0, Delta, eta, gamma0, Kx, phi, dphi)
    mean = psi.mean(axis=1)
    cov = np.cov(psi)
    stderr = np.sqrt(np.diag(cov) / n_samples)
    return mean, cov, stderr
