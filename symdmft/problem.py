"""The learning problem: data (inputs, targets, test points) and the time grid.

Conventions of THEORY.md §1: ``Kx = X X^T / D``; test inputs are appended to the index
set with zero weight in the loss; step k of discrete gradient descent is time ``k * eta``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arch.mlp import check_positive


def _finite_matrix(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a (points, input dimension) array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


@dataclass(frozen=True, eq=False)
class Data:
    """Training inputs ``X`` (P, D), targets ``y`` (P,), optional test inputs ``X_test``.

    ``y_test`` (optional) are targets of the test points: they never enter training, only
    the test loss (THEORY.md §3, expected loss).
    """
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    def __post_init__(self):
        X = _finite_matrix("X", self.X)
        if X.shape[0] == 0:
            raise ValueError("X must hold at least one training point (P = 0 given)")
        if X.shape[1] == 0:
            raise ValueError("X must have input dimension D >= 1")
        y = np.asarray(self.y, dtype=float).reshape(-1)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} targets but X has {X.shape[0]} points")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf")
        Xt = None
        if self.X_test is not None:
            Xt = _finite_matrix("X_test", self.X_test)
            if Xt.shape[0] == 0:
                Xt = None
            elif Xt.shape[1] != X.shape[1]:
                raise ValueError(f"X_test has input dimension {Xt.shape[1]}, X has {X.shape[1]}")
        yt = None
        if self.y_test is not None:
            if Xt is None:
                raise ValueError("y_test given without X_test")
            yt = np.asarray(self.y_test, dtype=float).reshape(-1)
            if yt.shape[0] != Xt.shape[0]:
                raise ValueError(f"y_test has {yt.shape[0]} targets but X_test has {Xt.shape[0]} points")
            if not np.all(np.isfinite(yt)):
                raise ValueError("y_test contains NaN or inf")
        object.__setattr__(self, "y_test", yt)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "X_test", Xt)

    @property
    def P(self) -> int:
        return self.X.shape[0]

    @property
    def D(self) -> int:
        return self.X.shape[1]

    @property
    def X_all(self) -> np.ndarray:
        """Train then test inputs: the index set of every (P_all,) result axis."""
        return self.X if self.X_test is None else np.vstack([self.X, self.X_test])

    @property
    def y_all(self) -> np.ndarray:
        """Targets of every point (P_all,); NaN for test points without a target."""
        rest = np.full(self.P_all - self.P, np.nan) if self.y_test is None else self.y_test
        return np.concatenate([self.y, rest])

    @property
    def P_all(self) -> int:
        return self.X_all.shape[0]

    @property
    def Kx(self) -> np.ndarray:
        """Input Gram matrix ``X_all X^T / D``, shape (P_all, P): rows all points, columns train."""
        return self.X_all @ self.X.T / self.D

    @property
    def Kx_all(self) -> np.ndarray:
        """``X_all X_all^T / D`` (the source covariance of u^1)."""
        return self.X_all @ self.X_all.T / self.D

    def describe(self) -> dict:
        return {"P": self.P, "P_test": self.P_all - self.P, "D": self.D}


def default_data() -> Data:
    """The embedded default problem (stated in the README).

    Three training points and one test point in D = 4, inputs i.i.d. N(0, 1) drawn with
    ``numpy.random.default_rng(2304)``, targets ``y = sin(2 x_1) + 0.5 x_2`` (a smooth
    nonlinear teacher), the test point's target included.
    """
    rng = np.random.default_rng(2304)
    X = rng.standard_normal((4, 4))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1]
    return Data(X[:3], y[:3], X_test=X[3:], y_test=y[3:])


@dataclass(frozen=True)
class TimeGrid:
    """Discrete gradient descent with step ``eta`` for ``steps`` steps: t_k = k * eta."""
    eta: float
    steps: int

    def __post_init__(self):
        object.__setattr__(self, "eta", check_positive("eta", self.eta))
        object.__setattr__(self, "steps", check_positive("steps", self.steps, integer=True))

    @property
    def t(self) -> np.ndarray:
        return self.eta * np.arange(self.steps + 1)
