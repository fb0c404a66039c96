"""Gaussian sources of the deep site process, drawn one time slice at a time (THEORY.md §2).

Every layer l of the infinite-width net is driven by two independent Gaussian processes over
(time, point): ``u^l ~ GP(0, Phi^{l-1})`` and ``r^l ~ GP(0, G^{l+1})``. The boundaries are
static: ``u^1 ~ N(0, Kx)`` (Phi^0 = Kx at all times) and ``r^L = w(0)``, one scalar per site
(G^{L+1} = 1). The covariances of the inner sources are themselves being solved for, but
only causally: the slice at step t needs ``Phi^{l-1}(t, s <= t)``, which the frontier has
just computed. ``CausalGaussian`` therefore grows the Cholesky factor of the (time, point)
covariance one block row at a time; the rows of a Cholesky factor depend only on the leading
block, so the samples are exactly those of the full factor of the final covariance.

``SourceLayout`` fixes which standard-normal coordinate feeds which source. The static
sources take the first coordinates, then the slices follow in time order (each step's inner
u's, then inner r's), so the leading, best-balanced Sobol coordinates drive the early times.
The same seed gives the same coordinates on every call (common random numbers).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..runtime.samplers import Rule, covariance_root, make_rule

# A new pivot whose variance is below this fraction of its diagonal is treated as zero: the
# slice is (numerically) a linear function of the past. Sample Gram matrices are exactly PSD,
# so such pivots are rounding noise; dropping one changes a source by at most ~1e-6 of its size.
RANK_TOL = 1e-12


class SourceLayout:
    """Columns of the standard-normal matrix zeta (n, dim) that drive each source."""

    def __init__(self, L: int, steps: int, P: int):
        self.L, self.T1, self.P = L, steps + 1, P
        self.per_step = 2 * (L - 1) * P          # u^2..u^L and r^1..r^{L-1}, P points each
        self.dim = P + 1 + self.T1 * self.per_step

    def u1(self) -> slice:
        return slice(0, self.P)

    def w0(self) -> int:
        return self.P

    def _slot(self, t: int, k: int) -> slice:
        start = self.P + 1 + t * self.per_step + k * self.P
        return slice(start, start + self.P)

    def u(self, l: int, t: int) -> slice:
        """Columns of u^l(t), l = 2..L."""
        return self._slot(t, l - 2)

    def r(self, l: int, t: int) -> slice:
        """Columns of r^l(t), l = 1..L-1."""
        return self._slot(t, self.L - 1 + l - 1)

    def gather(self, zeta: np.ndarray, kind: str, l: int) -> np.ndarray:
        """The standard normals of source ``kind`` ('u' or 'r') of layer l, (n, steps+1, P)."""
        cols = self.u if kind == "u" else self.r
        return np.ascontiguousarray(np.stack([zeta[:, cols(l, t)] for t in range(self.T1)], axis=1))


def source_rule(layout: SourceLayout, samples: int, seed: int, sampler: str) -> Rule:
    """The quadrature rule of the sources: Sobol QMC by default (dim is always > 3 here)."""
    if sampler == "auto":
        sampler = "qmc"
    if sampler == "gauss-hermite":
        raise ValueError(
            f"sampler='gauss-hermite' is a tensor rule, usable up to ~3 source dimensions; the deep "
            f"site process has {layout.dim} (all time slices of u^l and r^l): use 'qmc' or 'mc'")
    if sampler == "qmc" and layout.dim > 21201:
        raise ValueError(f"sampler='qmc' supports at most 21201 source dimensions (Sobol "
                         f"direction numbers), this problem has {layout.dim}: use sampler='mc'")
    return make_rule(layout.dim, samples, seed, sampler)


class CausalGaussian:
    """Samples of x ~ GP(0, C) over (time, point), one time slice after the other.

    ``extend(t, C_row)`` takes ``C_row[mu, s, nu] = C((t, mu), (s, nu))`` for s <= t and
    appends the Cholesky block row of slice t; ``sample(t, zeta)`` returns x(t) (n, P) from
    the standard normals of slices 0..t, ``zeta`` (n, t+1, P). Rank deficiency (a slice that
    is a linear function of the past, e.g. a static source) is allowed: zero pivots are
    dropped from the triangular solves.
    """

    def __init__(self, steps: int, P: int):
        self.P = P
        self.L = np.zeros(((steps + 1) * P, (steps + 1) * P))
        self.active = np.zeros((steps + 1) * P, dtype=bool)

    def extend(self, t: int, C_row: np.ndarray) -> None:
        P = self.P
        _extend(self.L, self.active, np.ascontiguousarray(C_row.reshape(P, (t + 1) * P)), t * P, RANK_TOL)

    def sample(self, t: int, zeta: np.ndarray) -> np.ndarray:
        P = self.P
        n = zeta.shape[0]
        return np.einsum("nk,pk->np", zeta.reshape(n, (t + 1) * P), self.L[t * P:(t + 1) * P, :(t + 1) * P])


@dataclass(frozen=True, eq=False)
class SourceDraws:
    """The quadrature points of every source, split by source: all the frontier reads.

    ``u1`` (n, P) ~ N(0, Kx) and ``w0`` (n,) ~ N(0, 1) are final; ``zeta_u[l]``, ``zeta_r[l]``
    (n, steps+1, P) are the standard normals that ``CausalGaussian`` turns into u^l, r^l.
    """
    u1: np.ndarray
    w0: np.ndarray
    zeta_u: dict
    zeta_r: dict
    weights: np.ndarray
    method: str

    @property
    def n(self) -> int:
        return self.weights.shape[0]


def draw_sources(layout: SourceLayout, samples: int, seed: int, sampler: str, Kx_all: np.ndarray) -> SourceDraws:
    """Draw the rule once and split it (the (n, dim) matrix itself is not kept)."""
    rule = source_rule(layout, samples, seed, sampler)
    zeta = rule.zeta
    u1 = np.ascontiguousarray(zeta[:, layout.u1()] @ covariance_root(Kx_all).T)
    w0 = np.ascontiguousarray(zeta[:, layout.w0()])
    zeta_u = {l: layout.gather(zeta, "u", l) for l in range(2, layout.L + 1)}
    zeta_r = {l: layout.gather(zeta, "r", l) for l in range(1, layout.L)}
    return SourceDraws(u1, w0, zeta_u, zeta_r, rule.weights, rule.method)


@numba.njit(cache=True)
def _extend(L, active, C, lo, tol):
    """Rows lo..lo+P-1 of the Cholesky factor (Cholesky-Banachiewicz), zero pivots dropped.

    A forward substitution in a small compiled loop: no BLAS call, whose threads would
    compete with the Numba threads of the response sweeps.
    """
    P = C.shape[0]
    for i in range(P):
        row = lo + i
        for j in range(row):
            if active[j]:
                acc = C[i, j]
                for k in range(j):
                    acc -= L[row, k] * L[j, k]
                L[row, j] = acc / L[j, j]
        pivot = C[i, row]
        for k in range(row):
            pivot -= L[row, k] * L[row, k]
        if pivot > 0.0 and pivot > tol * max(C[i, row], 0.0):
            L[row, row] = np.sqrt(pivot)
            active[row] = True
