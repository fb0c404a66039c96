"""Tensor Gauss-Hermite quadrature of Gaussian site averages in 1-4 dimensions.

The initialisation statistics (THEORY.md §3, "Lazy limit") need averages of products of
phi and phi' at up to four data points under ``h ~ N(0, C_SS)``, C the previous layer's
kernel restricted to the distinct points S (k = |S| <= 4). Each average is a tensor
Gauss-Hermite sum over ``zeta`` in R^k with ``h = R zeta``, R the *symmetric* eigen-root
of C_SS (rank-deficient C allowed, e.g. a test point equal to a training point). The
symmetric root spreads every h_j over all axes, so the integrand varies slowest along each
axis: for correlated points it converges orders of magnitude faster than a Cholesky root.

Nodes per axis: an n-point rule (Golub-Welsch, ``hermite_nodes``) is exact for polynomials of degree < 2n per axis and
converges geometrically for functions analytic in a strip; for tanh (poles at
Im h = pi/2, the slowest built-in) the strip in zeta shrinks like 1/sigma, so the node
count grows with the largest standard deviation sigma of the set: ``n = ceil(NODES[k] *
s)`` with s the first step of ``LADDER`` (1, 1.25, ..., 3) at or above sigma, capped at
``MAX_NODES[k]``. Measured against 44 nodes per axis in 4D
(tests/test_deep_init.py checks the 2D and 4D cases against twice the nodes), the
relative error of the four-point moments is about 1e-4 for tanh and 1e-5 for erf at
unit variance and stays below ~5e-4 up to variance 3 with the scaled counts; softplus,
sin and polynomials are far more accurate. That is far below the 1-3% sampling error of
any ensemble the results are compared with. Nodes carrying less than PRUNE of the
largest weight are dropped (together < 1e-13 of the mass, 30-45% of the 3D/4D nodes).
Kinked activations converge only algebraically (about n^-2 for a kink, n^-1 for a jump);
relu therefore uses exact orthant moments (``orthant.py``) instead.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
from scipy.linalg import eigh_tridiagonal

NODES = {1: 160, 2: 80, 3: 24, 4: 14}
MAX_NODES = {1: 400, 2: 240, 3: 48, 4: 24}
PRUNE = 1e-14
LADDER = np.array([1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0])

# Point sets handled together: bounds the (sets, k, nodes) field array to ~32 MB.
CHUNK_ENTRIES = 4 * 2**20


@lru_cache(maxsize=None)
def hermite_nodes(n: int):
    """Probabilists' Gauss-Hermite nodes and weights (sum 1) by Golub-Welsch.

    The eigen-decomposition of the Jacobi matrix stays accurate for any n, where
    ``numpy.polynomial.hermite_e.hermegauss`` overflows above n ~ 150.
    """
    x, V = eigh_tridiagonal(np.zeros(n), np.sqrt(np.arange(1.0, n)))
    w = V[0] ** 2
    return x, w / w.sum()


@lru_cache(maxsize=None)
def gauss_hermite(dim: int, n: int):
    """Pruned probabilists' tensor rule: nodes (m, dim), weights (m,) summing to 1, read-only."""
    x, w = hermite_nodes(n)
    grids = np.meshgrid(*([x] * dim), indexing="ij")
    wgrids = np.meshgrid(*([w / w.sum()] * dim), indexing="ij")
    zeta = np.stack([g.ravel() for g in grids], axis=1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], axis=1), axis=1)
    keep = weights > PRUNE * weights.max()
    zeta, weights = np.ascontiguousarray(zeta[keep].T), weights[keep] / weights[keep].sum()
    zeta.setflags(write=False)
    weights.setflags(write=False)
    return zeta, weights


def batched_root(C: np.ndarray) -> np.ndarray:
    """Symmetric roots ``R`` with ``R R^T = C`` for a stack (..., k, k) of PSD matrices."""
    lam, V = np.linalg.eigh((C + np.swapaxes(C, -1, -2)) / 2)
    return np.einsum("...ij,...j,...kj->...ik", V, np.sqrt(np.clip(lam, 0.0, None)), V)


def scaled_nodes(k: int, sigma):
    """NODES[k] times the first LADDER step >= sigma (a few distinct rules, not one per set)."""
    step = LADDER[np.minimum(np.searchsorted(LADDER, np.asarray(sigma) - 1e-12), len(LADDER) - 1)]
    step = np.where(np.asarray(sigma) > LADDER[-1], sigma, step)
    return np.ceil(NODES[k] * step).astype(int)


def node_counts(C_sets: np.ndarray) -> np.ndarray:
    """Nodes per axis for each set of a stack (S, k, k): NODES[k] scaled by the largest sigma."""
    k = C_sets.shape[-1]
    sigma = np.sqrt(np.max(np.einsum("sii->si", C_sets), axis=1))
    n = scaled_nodes(k, sigma)
    if np.any(n > MAX_NODES[k]):
        warnings.warn(f"pre-activation variances up to {sigma.max() ** 2:.3g}: {k}-point Gauss-"
                      f"Hermite capped at {MAX_NODES[k]} nodes per axis, relative error may "
                      "exceed 1e-3 for saturating activations", stacklevel=4)
    return np.minimum(n, MAX_NODES[k])


def grouped(C_sets: np.ndarray, n: int | None = None):
    """(node count, index chunk) pairs covering the stack; chunks bounded in memory.

    ``n`` fixes the node count (polynomial activations: exact with 2 deg + 1 nodes)."""
    k = C_sets.shape[-1]
    counts = node_counts(C_sets) if n is None else np.full(C_sets.shape[0], n)
    for n in np.unique(counts):
        idx = np.flatnonzero(counts == n)
        step = max(1, CHUNK_ENTRIES // (k * gauss_hermite(k, int(n))[1].size))
        for lo in range(0, idx.size, step):
            yield int(n), idx[lo:lo + step]


def gaussian_fields(C_sets: np.ndarray, n: int):
    """Fields ``h`` (S, k, m) and weights (m,) with ``E[F(h)] ~ sum_i w_i F(h[s, :, i])``."""
    zeta, weights = gauss_hermite(C_sets.shape[-1], n)
    return np.matmul(batched_root(C_sets), zeta), weights


def _side_products(columns, parts, coords):
    """Products over ``coords`` of the factors named by each part: (S, len(parts), m)."""
    S, _, m = columns["p"].shape
    out = np.empty((S, len(parts), m))
    for i, part in enumerate(parts):
        prod = np.ones((S, m))
        for j, names in zip(coords, part):
            for name in names:
                prod = prod * columns[name][:, j]
        out[:, i] = prod
    return out


def tensor_moments(C_sets: np.ndarray, keys, phi, dphi, n: int | None = None) -> dict:
    """``E[prod_j F_j(h_j)]`` for each key, h ~ N(0, C_s) for every set s of the stack (S, k, k).

    A key is a tuple of k factor strings over {"p", "d"}: ("pd", "p", "d") means
    ``phi(h_0) phi'(h_0) phi(h_1) phi'(h_2)``. ``n``: fixed nodes per axis (default: scaled
    by the variance, ``node_counts``). Returns key -> (S,) array.

    Each key factorises into the coordinates before and after k // 2; the distinct left and
    right products are formed once and every moment is one entry of the batched product
    ``(left * w) @ right^T`` (BLAS), instead of a multiply-and-sum per key.
    """
    k = C_sets.shape[-1]
    cut = k // 2
    lefts = sorted({key[:cut] for key in keys})
    rights = sorted({key[cut:] for key in keys})
    out = {key: np.empty(C_sets.shape[0]) for key in keys}
    for m, idx in grouped(C_sets, n):
        h, w = gaussian_fields(C_sets[idx], m)
        columns = {"p": phi(h), "d": dphi(h)}
        left = _side_products(columns, lefts, range(cut)) * w
        right = _side_products(columns, rights, range(cut, k))
        moments = np.matmul(left, np.swapaxes(right, 1, 2))          # (S, lefts, rights)
        for key in keys:
            out[key][idx] = moments[:, lefts.index(key[:cut]), rights.index(key[cut:])]
    return out


def pair_nodes(scale: float, dim: int) -> int:
    """Node count for the two-point maps (dim 1 or 2) at largest standard deviation ``scale``."""
    return int(min(MAX_NODES[dim], scaled_nodes(dim, scale)))
