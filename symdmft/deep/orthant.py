"""Exact Gaussian orthant moments: the relu / step expectations in up to four dimensions.

For relu, ``phi = h 1{h>0}`` and ``phi' = 1{h>0}``, so every product of phi's and phi''s
at the distinct points S is a truncated moment

    m(a; C) = E[ prod_i h_i^{a_i} 1{h > 0} ],    h ~ N(0, C),  C = C_SS  (k = |S| <= 4)

(a_i = number of phi factors at point i). Gaussian integration by parts (Stein) on one
factor h_i lowers the degree, and the boundary term of the indicator conditions one
coordinate on zero (Tallis 1961; Kan & Robotti 2017):

    m(a) = sum_j C_ij [ b_j m(b - e_j) + 1{b_j = 0} (2 pi C_jj)^{-1/2} m_{-j}(b_{-j}; C_{-j|j}) ],
    b = a - e_i,   C_{-j|j} = C_{-j,-j} - C_{-j,j} C_{j,-j} / C_jj.

The recursion ends at orthant probabilities P_k(R) (R the correlation matrix): 1/2,
1/4 + asin(r)/(2 pi), 1/8 + sum asin(r_ij)/(4 pi) in closed form, and for k = 4 Plackett's
identity ``dP_4/dr_ij = phi_2(0, 0; r_ij) P_2(R_{kl|ij})`` integrated along
``R(s) = I + s (R - I)`` from ``P_4(I) = 1/16``: a smooth 1D integral done by 32-point
Gauss-Legendre (error < 1e-12 for correlations away from +-1). Everything is vectorised
over a stack of covariances; C must be positive definite (distinct, non-parallel inputs).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

PLACKETT_NODES = 32


def _corr(C):
    d = np.sqrt(np.einsum("...ii->...i", C))
    return C / (d[..., :, None] * d[..., None, :])


def _asin(r):
    return np.arcsin(np.clip(r, -1.0, 1.0))


def _p2(R, i=0, j=1):
    return 0.25 + _asin(R[..., i, j]) / (2 * np.pi)


def _p4(R):
    s, w = np.polynomial.legendre.leggauss(PLACKETT_NODES)
    s, w = (s + 1) / 2, w / 2
    eye = np.eye(4)
    total = np.full(R.shape[:-2], 1.0 / 16)
    for sk, wk in zip(s, w):
        Rs = eye + sk * (R - eye)
        for i, j in combinations(range(4), 2):
            k, l = [m for m in range(4) if m not in (i, j)]
            cond = _conditional(Rs, [k, l], [i, j])
            r = Rs[..., i, j]
            dens = 1.0 / (2 * np.pi * np.sqrt(1 - r * r))
            total = total + wk * R[..., i, j] * dens * _p2(_corr(cond))
    return total


def orthant_probability(C: np.ndarray) -> np.ndarray:
    """P(h > 0) for h ~ N(0, C), C a stack (..., k, k), k <= 4."""
    k = C.shape[-1]
    if k == 0:
        return np.ones(C.shape[:-2])
    if k == 1:
        return np.full(C.shape[:-2], 0.5)
    R = _corr(C)
    if k == 2:
        return _p2(R)
    if k == 3:
        return 0.125 + (_asin(R[..., 0, 1]) + _asin(R[..., 0, 2]) + _asin(R[..., 1, 2])) / (4 * np.pi)
    if k == 4:
        return _p4(R)
    raise ValueError(f"orthant probabilities are implemented for k <= 4, got k = {k}")


def _conditional(C, keep, given):
    """Covariance of h_keep given h_given = 0."""
    A = C[..., keep, :][..., :, keep]
    B = C[..., keep, :][..., :, given]
    G = C[..., given, :][..., :, given]
    return A - B @ np.linalg.solve(G, np.swapaxes(B, -1, -2))


def orthant_moment(a: tuple, C: np.ndarray) -> np.ndarray:
    """m(a; C) = E[prod_i h_i^a_i 1{h > 0}] for a stack of covariances C (..., k, k)."""
    cache: dict = {}
    return _moment(tuple(a), tuple(range(len(a))), C, cache)


def _moment(a, idx, C, cache):
    """Moment over the coordinates ``idx`` of the original C, conditioned on the others = 0."""
    key = (a, idx)
    if key in cache:
        return cache[key]
    full = C.shape[-1]
    given = [m for m in range(full) if m not in idx]
    Cc = C[..., idx, :][..., :, idx] if not given else _conditional(C, list(idx), given)
    if not any(a):
        out = orthant_probability(Cc)
    else:
        i = next(n for n, ai in enumerate(a) if ai)
        b = list(a)
        b[i] -= 1
        out = np.zeros(C.shape[:-2])
        for j in range(len(a)):
            if b[j]:
                lower = list(b)
                lower[j] -= 1
                out = out + Cc[..., i, j] * b[j] * _moment(tuple(lower), idx, C, cache)
            else:
                rest = tuple(b[:j] + b[j + 1:])
                sub = idx[:j] + idx[j + 1:]
                dens = 1.0 / np.sqrt(2 * np.pi * Cc[..., j, j])
                out = out + Cc[..., i, j] * dens * _moment(rest, sub, C, cache)
    cache[key] = out
    return out
