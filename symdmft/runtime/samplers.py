"""Seeded quadrature rules for the Gaussian sources of the site process (THEORY.md §2).

A rule is a set of standard-normal points ``zeta`` (n, dim) with weights summing to one;
site averages ``<F>`` become ``sum_i weights_i F(zeta_i)``:

* ``gauss-hermite``: tensor Gauss-Hermite, exact for polynomials of degree < 2n per axis;
  used by ``auto`` when ``dim <= 3``.
* ``qmc``: scrambled Sobol points mapped through the normal quantile; used otherwise.
  The count is rounded up to a power of two (Sobol's balance property).
* ``mc``: plain Monte Carlo.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri
from scipy.stats import qmc

SAMPLERS = ("auto", "gauss-hermite", "qmc", "mc")


@dataclass(frozen=True, eq=False)
class Rule:
    zeta: np.ndarray       # (n, dim) standard-normal points
    weights: np.ndarray    # (n,), sum 1
    method: str

    @property
    def n(self) -> int:
        return self.weights.shape[0]


def gauss_hermite(dim: int, samples: int) -> Rule:
    return tensor_gauss_hermite(dim, max(2, int(round(samples ** (1.0 / dim)))))


def tensor_gauss_hermite(dim: int, per_axis: int) -> Rule:
    """The tensor Gauss-Hermite rule of N(0, I_dim) with ``per_axis`` nodes per axis."""
    x, w = np.polynomial.hermite_e.hermegauss(per_axis)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * dim), indexing="ij")
    wgrids = np.meshgrid(*([w] * dim), indexing="ij")
    zeta = np.stack([g.ravel() for g in grids], axis=1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], axis=1), axis=1)
    return Rule(zeta, weights / weights.sum(), "gauss-hermite")


def sobol(dim: int, samples: int, seed: int) -> Rule:
    m = int(np.ceil(np.log2(max(samples, 2))))
    u = qmc.Sobol(d=dim, scramble=True, seed=np.random.default_rng(seed)).random_base2(m)
    zeta = ndtri(np.clip(u, 1e-300, 1 - 1e-16))
    return Rule(zeta, np.full(u.shape[0], 1.0 / u.shape[0]), "qmc")


def monte_carlo(dim: int, samples: int, seed: int) -> Rule:
    zeta = np.random.default_rng(seed).standard_normal((samples, dim))
    return Rule(zeta, np.full(samples, 1.0 / samples), "mc")


def check_seed(seed) -> int:
    """The seed as an int; ValueError naming it unless it is a non-negative integer."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_sampling(samples, seed, sampler) -> tuple:
    """(samples, seed) checked, with the sampler's name, before any point is drawn."""
    from ..arch.mlp import check_positive
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    return check_positive("samples", samples, integer=True), check_seed(seed)


def make_rule(dim: int, samples: int, seed: int = 0, method: str = "auto") -> Rule:
    if method not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {method!r}")
    if method == "auto":
        method = "gauss-hermite" if dim <= 3 else "qmc"
    if method == "gauss-hermite":
        return gauss_hermite(dim, samples)
    if method == "qmc":
        return sobol(dim, samples, seed)
    return monte_carlo(dim, samples, seed)


def covariance_root(C: np.ndarray) -> np.ndarray:
    """A matrix L with ``L L^T = C`` for a symmetric PSD C (rank-deficient allowed)."""
    lam, V = np.linalg.eigh((C + C.T) / 2)
    return V * np.sqrt(np.clip(lam, 0.0, None))
