"""The input distribution of online learning, as a quadrature rule (docs/online_learning.md §1).

Population gradient descent needs averages ``E_x[F(x)]`` over the input distribution. A
``Population`` stores them as a weighted rule ``E_x[F] = sum_q rho_q F(x_q)`` with the target
``y_q = y(x_q)`` at every node:

* ``Population.gaussian(dim, target, order)``: x ~ N(0, I_D) by the tensor Gauss-Hermite rule
  with ``order`` nodes per axis (exact for polynomials of degree < 2 order in x; spectrally
  accurate for smooth integrands such as tanh networks). Minibatches draw fresh N(0, I_D)
  inputs.
* ``Population.points(data)``: the finite training set with weight 1 per point, so that
  population GD *is* the full-batch GD of THEORY.md §1 (loss ``1/2 sum_mu Delta_mu^2``);
  minibatches draw points uniformly.

``Teacher`` is the usual single-index target ``y(x) = scale * phi*(w* . x / sqrt(D))``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..arch.activations import h, parse_activation
from ..arch.mlp import check_positive
from ..runtime.samplers import tensor_gauss_hermite


@dataclass(frozen=True, eq=False)
class Teacher:
    """``y(x) = scale * phi*(w_star . x / sqrt(D))``; ``phi*`` any activation ``sd.mlp`` accepts."""
    activation: object = "tanh"
    w_star: tuple = (1.0, 0.5)
    scale: float = 1.0

    def __post_init__(self):
        w = np.asarray(self.w_star, dtype=float).reshape(-1)
        if w.size == 0 or not np.all(np.isfinite(w)):
            raise ValueError(f"w_star must be a non-empty finite vector, got {self.w_star!r}")
        object.__setattr__(self, "w_star", tuple(w))
        if not np.isfinite(self.scale):
            raise ValueError(f"scale must be finite, got {self.scale!r}")
        object.__setattr__(self, "_phi", sp.lambdify(h, parse_activation(self.activation),
                                                     modules=["scipy", "numpy"]))

    @property
    def dim(self) -> int:
        return len(self.w_star)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if X.shape[1] != self.dim:
            raise ValueError(f"teacher has input dimension {self.dim}, inputs have {X.shape[1]}")
        z = X @ np.asarray(self.w_star) / np.sqrt(self.dim)
        return self.scale * np.broadcast_to(self._phi(z), z.shape).astype(float)


@dataclass(frozen=True, eq=False)
class Population:
    """Quadrature nodes ``X`` (Q, D), weights ``rho`` (Q,), targets ``y`` (Q,) and a sampler."""
    X: np.ndarray
    rho: np.ndarray
    y: np.ndarray
    kind: str
    target: object = None

    @property
    def dim(self) -> int:
        return self.X.shape[1]

    @property
    def Q(self) -> int:
        return self.X.shape[0]

    @classmethod
    def gaussian(cls, dim: int, target, order: int = 8) -> "Population":
        """x ~ N(0, I_dim); ``target`` a callable (Q, dim) -> (Q,), e.g. a ``Teacher``."""
        dim = check_positive("dim", dim, integer=True)
        order = check_positive("order", order, integer=True)
        if order ** dim > 200_000:
            raise ValueError(f"order ** dim = {order ** dim} nodes is too many for a tensor rule "
                             f"(order={order}, dim={dim}); lower order (at most 200000 nodes)")
        if not callable(target):
            raise TypeError("target must be callable on a (Q, dim) array, e.g. sd.online.Teacher")
        rule = tensor_gauss_hermite(dim, order)
        return cls(rule.zeta, rule.weights, _targets(target, rule.zeta), "gaussian", target)

    @classmethod
    def points(cls, data) -> "Population":
        """The training points of ``data`` (a ``sd.Data``), weight 1 each (THEORY.md §1 loss)."""
        return cls(np.array(data.X, dtype=float), np.ones(data.P), np.array(data.y, dtype=float),
                   "points")

    def sample(self, rng: np.random.Generator, size: tuple) -> tuple:
        """A fresh minibatch: inputs (*size, D) and targets (*size,) drawn from the population.

        For ``points`` each draw is a training point chosen uniformly; the minibatch gradient
        is rescaled by the caller so that its mean is the population gradient.
        """
        if self.kind == "gaussian":
            X = rng.standard_normal((*size, self.dim))
            return X, _targets(self.target, X.reshape(-1, self.dim)).reshape(size)
        idx = rng.integers(0, self.Q, size=size)
        return self.X[idx], self.y[idx]

    def describe(self) -> dict:
        return {"population": self.kind, "input_dim": self.dim, "nodes": self.Q}


def _targets(target, X: np.ndarray) -> np.ndarray:
    y = np.asarray(target(X), dtype=float).reshape(-1)
    if y.shape[0] != X.shape[0] or not np.all(np.isfinite(y)):
        raise ValueError("target must return one finite value per input row")
    return y
