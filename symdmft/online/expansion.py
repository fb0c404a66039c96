"""First- and second-order response of the particle system to one particle's mass (docs §3).

A width-N network is the particle system of ``particles.py`` run on the empirical measure
``mu_N`` of N i.i.d. draws, so every observable is a smooth functional ``O(mu_N)`` and its
O(1/N) statistics follow from the von Mises expansion around the infinite-width measure mu:

    N Var O          -> E_z[ psi1(z)^2 ],          psi1(z) = d/de O(mu + e (delta_z - mu))
    N (E O - O_inf)  -> 1/2 E_z[ psi2(z) ],        psi2(z) = d2/de2 O(mu + e (delta_z - mu))

With mu represented by the rule (pi_j, z_j), the direction of particle i shifts the weights by
``dpi_j = [i == j] - pi_j``; the particles do not move initially, they respond through Delta.
This is the propagator of THEORY.md §3 applied to the site noise of one particle at a time:
the first-order pass is the forward substitution (I - D)^{-1} eps, the second-order pass adds
the D2 and Cov(d psi/dq, psi) terms of the mean correction. ``directions`` runs both passes for
particles i0..i1 (exact forward-mode derivatives of the discrete recursion, no differencing).
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def directions(i0, i1, X, rho, y, f, P0, P1, P2, P3, A, pi, eta, gamma0, center):
    """d f / de and d2 f / de2 on every node and step, for the directions of particles i0..i1-1.

    ``P0..P3`` (T+1, M, Q): phi and its first three derivatives at the preactivations; ``A``
    (T+1, M) readouts; ``f`` (T+1, Q) outputs. Returns two (i1 - i0, T+1, Q) arrays.
    """
    n_t, M, Q = P0.shape
    D = X.shape[1]
    cw = eta * gamma0 / np.sqrt(D)
    ca = eta * gamma0
    inv_sqrt_d = 1.0 / np.sqrt(D)
    dF = np.zeros((i1 - i0, n_t, Q))
    d2F = np.zeros((i1 - i0, n_t, Q))
    dW = np.zeros((M, D))
    d2W = np.zeros((M, D))
    dA = np.zeros(M)
    d2A = np.zeros(M)
    dh = np.zeros((M, Q))
    d2h = np.zeros((M, Q))
    df = np.zeros(Q)
    d2f = np.zeros(Q)
    for n in range(i1 - i0):
        i = i0 + n
        dW[:] = 0.0
        d2W[:] = 0.0
        dA[:] = 0.0
        d2A[:] = 0.0
        for k in range(n_t):
            # the outputs at step k: mass term of particle i, then the moved particles
            for q in range(Q):
                psi = A[k, i] * P0[k, i, q]
                if center:
                    psi -= A[0, i] * P0[0, i, q]
                df[q] = psi / gamma0 - f[k, q]
                d2f[q] = 0.0
            for j in range(M):
                for q in range(Q):
                    s1 = 0.0
                    s2 = 0.0
                    for d in range(D):
                        s1 += dW[j, d] * X[q, d]
                        s2 += d2W[j, d] * X[q, d]
                    dh[j, q] = s1 * inv_sqrt_d
                    d2h[j, q] = s2 * inv_sqrt_d
                    a, p0, p1, p2 = A[k, j], P0[k, j, q], P1[k, j, q], P2[k, j, q]
                    first = dA[j] * p0 + a * p1 * dh[j, q]
                    second = (d2A[j] * p0 + 2.0 * dA[j] * p1 * dh[j, q]
                              + a * (p2 * dh[j, q] ** 2 + p1 * d2h[j, q]))
                    dpi = (1.0 if j == i else 0.0) - pi[j]
                    df[q] += pi[j] * first / gamma0
                    d2f[q] += (2.0 * dpi * first + pi[j] * second) / gamma0
            for q in range(Q):
                dF[n, k, q] = df[q]
                d2F[n, k, q] = d2f[q]
            if k == n_t - 1:
                break
            # one GD step of every particle's tangents (Delta = y - f, so dDelta = -df)
            for j in range(M):
                a = A[k, j]
                da, d2a = dA[j], d2A[j]
                ga = 0.0
                g2a = 0.0
                for q in range(Q):
                    p0, p1, p2, p3 = P0[k, j, q], P1[k, j, q], P2[k, j, q], P3[k, j, q]
                    dl, d2l, r = -df[q], -d2f[q], y[q] - f[k, q]
                    u, u2 = dh[j, q], d2h[j, q]
                    gw = rho[q] * (dl * a * p1 + r * (da * p1 + a * p2 * u))
                    g2w = rho[q] * (d2l * a * p1 + 2.0 * dl * (da * p1 + a * p2 * u)
                                    + r * (d2a * p1 + 2.0 * da * p2 * u + a * (p3 * u * u + p2 * u2)))
                    ga += rho[q] * (dl * p0 + r * p1 * u)
                    g2a += rho[q] * (d2l * p0 + 2.0 * dl * p1 * u + r * (p2 * u * u + p1 * u2))
                    for d in range(D):
                        dW[j, d] += cw * gw * X[q, d]
                        d2W[j, d] += cw * g2w * X[q, d]
                dA[j] += ca * ga
                d2A[j] += ca * g2a
    return dF, d2F
