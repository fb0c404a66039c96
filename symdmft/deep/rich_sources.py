"""Gaussian sources of the deep site process, drawn one time slice at a time (THEORY.md §2).

Every layer l of the infinite-width net is driven by two independent Gaussian processes over
(time, point): ``u^l ~ GP(0, Phi^{l-1})`` and ``r^l ~ GP(0, G^{l+1})``. The boundaries are
static: ``u^1 ~ N(0, Kx)`` (Phi^0 = Kx at all times) and ``r^L = w(0)``, one scalar per site
(G^{L+1} = 1). The covariances of the inner sources are themselves being solved for, but
only causally: the slice at step t needs ``Phi^{l-1}(t, s <= t)``, which the frontier has
just computed. ``CausalGaussian`` therefore grows a triangular factor of the (time, point)
covariance one slice at a time; its columns up to step t depend only on the leading block,
so the samples are exactly those of the factor of the final covariance.

The covariances are weighted Gram matrices of site paths, ``C = Y^T W Y`` (Y: phi of layer
l-1, or g of layer l+1), and they are nearly singular: consecutive slices differ by
O(eta gamma0), and the (time, point) dimension can exceed the paths' effective rank.
A Cholesky factorisation of C squares that condition number; with rank-revealing cut-offs
it lost 0.15 of a unit variance on a 40-step gradient-independence run. The factor is
therefore taken from a QR decomposition of ``W^{1/2} Y`` (Gram-Schmidt with
reorthogonalisation, one column per point and step): ``C = R^T R`` to rounding, whatever the
conditioning, and ``x(t) = R[:, t]^T zeta``.

``SourceLayout`` fixes which standard-normal coordinate feeds which source. The static
sources take the first coordinates, then the slices follow in time order (each step's inner
u's, then inner r's), so the leading, best-balanced Sobol coordinates drive the early times.
The same seed gives the same coordinates on every call (common random numbers).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..runtime.samplers import Rule, covariance_root, make_rule

# A new column whose residual norm, after projecting out the earlier ones, is below this
# fraction of its norm opens no new direction (its variance, <= 1e-18 of the column's, is
# dropped): beyond this, rounding would dominate the direction and spoil orthogonality.
QR_TOL = 1e-9


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
    """Samples of x ~ GP(0, Y^T W Y) over (time, point), one time slice after the other.

    ``extend(t, Y_t, sqrt_w)`` appends the data of slice t, ``Y_t`` (n, P), with ``sqrt_w``
    the square roots of the site weights; ``sample(t, zeta)`` returns x(t) (n, P) from the
    standard normals of slices 0..t, ``zeta`` (n, t+1, P). Column (s, nu) of the data opens
    innovation (s, nu) when it is not a combination of the earlier columns; R[j, (t, mu)]
    is the weight of innovation j in x(t, mu).
    """

    def __init__(self, n: int, steps: int, P: int):
        size = (steps + 1) * P
        self.P = P
        self.Qt = np.zeros((size, n))     # orthonormal directions as rows, 0..m-1 used
        self.R = np.zeros((size, size))   # upper triangular: C = R^T R
        self.opened = []                  # the innovation (row of R) of each direction

    def _project(self, y: np.ndarray, m: int, col: int) -> np.ndarray:
        """Remove directions 0..m-1 from y (n, k), twice ("twice is enough"), recording R."""
        Qt = self.Qt[:m]
        for _ in range(2):
            c = Qt @ y
            y = y - Qt.T @ c
            self.R[self.opened[:m], col:col + y.shape[1]] += c
        return y

    def extend(self, t: int, Y: np.ndarray, sqrt_w: np.ndarray) -> None:
        P, lo = self.P, t * self.P
        Yw = sqrt_w[:, None] * Y
        norm0 = np.sqrt(np.einsum("np,np->p", Yw, Yw))
        m0 = len(self.opened)
        if m0:
            Yw = self._project(Yw, m0, lo)         # the past, as one block
        for mu in range(P):                         # then within the slice, point by point
            col = lo + mu
            y = Yw[:, mu:mu + 1]
            if len(self.opened) > m0:
                Qt = self.Qt[m0:len(self.opened)]
                for _ in range(2):
                    c = Qt @ y
                    y = y - Qt.T @ c
                    self.R[self.opened[m0:], col] += c[:, 0]
            norm = float(np.sqrt(np.sum(y * y)))
            if norm > QR_TOL * norm0[mu] and norm > 0.0:
                self.Qt[len(self.opened)] = y[:, 0] / norm
                self.R[col, col] = norm
                self.opened.append(col)

    def sample(self, t: int, zeta: np.ndarray) -> np.ndarray:
        P = self.P
        n = zeta.shape[0]
        return np.einsum("nk,kp->np", zeta.reshape(n, (t + 1) * P), self.R[:(t + 1) * P, t * P:(t + 1) * P])


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
