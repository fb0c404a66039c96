"""Brute-force finite-width two-layer networks (numpy only, no symdmft): ground truth.

Implements THEORY.md section 1 literally for L = 1, with explicit weight matrices:

    h_mu = W0 x_mu / sqrt(D),     f_mu = w . phi(h_mu) / (gamma0 N)     (centred: f - f(0))
    w  += eta gamma0 sum_mu Delta_mu phi(h_mu)
    W0 += (eta gamma0 / sqrt(D)) sum_mu Delta_mu (phi'(h_mu) * w) x_mu^T

(simultaneous update from the pre-step weights), for an ensemble of E independent networks.
"""
from __future__ import annotations

import numpy as np

__all__ = ["train_two_layer_ensemble"]


def train_two_layer_ensemble(X, y, gamma0, eta, T, N, E=1, seed=0, center=False,
                             phi=None, dphi=None):
    """Train E width-N networks for T steps of GD on inputs X (P, D), targets y (P,).

    Returns dict: ``f`` (E, T+1, P) outputs (centred if ``center``), ``K`` (E, T+1, P, P) NTK
    ``Kx * (g g^T)/N + phi phi^T / N``, ``H`` (E, T+1, P, P) = phi phi^T / N, and the initial
    ``h0`` (E, N, P), ``w0`` (E, N).
    """
    phi = phi or (lambda h: h)
    dphi = dphi or (lambda h: np.ones_like(h))
    X = np.atleast_2d(np.asarray(X, float))
    y = np.atleast_1d(np.asarray(y, float))
    P, D = X.shape
    Kx = X @ X.T / D
    rng = np.random.default_rng(seed)
    W0 = rng.standard_normal((E, N, D))
    w = rng.standard_normal((E, N))
    fs, Ks, Hs = [], [], []
    h0 = np.einsum("end,pd->enp", W0, X) / np.sqrt(D)
    w_init = w.copy()
    f_init = None
    for k in range(T + 1):
        h = np.einsum("end,pd->enp", W0, X) / np.sqrt(D)        # (E, N, P)
        ph = phi(h)
        g = dphi(h) * w[:, :, None]                              # backward field g^1
        f = np.einsum("en,enp->ep", w, ph) / (gamma0 * N)
        if f_init is None:
            f_init = f.copy()
        if center:
            f = f - f_init
        H = np.einsum("enp,enq->epq", ph, ph) / N
        K = Kx[None] * np.einsum("enp,enq->epq", g, g) / N + H
        fs.append(f)
        Ks.append(K)
        Hs.append(H)
        if k == T:
            break
        d = y[None, :] - f                                       # (E, P)
        w_new = w + eta * gamma0 * np.einsum("ep,enp->en", d, ph)
        W0 = W0 + (eta * gamma0 / np.sqrt(D)) * np.einsum("ep,enp,pd->end", d, g, X)
        w = w_new
    return dict(f=np.stack(fs, axis=1), K=np.stack(Ks, axis=1), H=np.stack(Hs, axis=1),
                h0=h0, w0=w_init)
