"""``OnlineResult``: the online-learning loss curve at infinite width and its O(1/N) laws.

All statistics are leading order in 1/N (docs/online_learning.md §3); per step k (t = k eta):

* ``f`` (T+1, Q): infinite-width outputs on the population's nodes; ``loss`` (T+1,): the
  population loss ``1/2 E_x (y - f)^2``.
* ``f_var``, ``f_bias`` (T+1, Q): ``N Var f(x_q)`` and ``N (E f(x_q) - f_inf(x_q))``.
* ``loss_cov`` (T+1, T+1): ``N Cov`` of the loss at two steps; ``loss_bias`` (T+1,):
  ``N (E L - L_inf)``. ``expected_loss(N)`` = ``loss + loss_bias / N``: the slow-down of
  online learning by the initialisation variance (``loss_parts``: its variance and bias parts).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io import netcdf_attrs


@dataclass(eq=False)
class OnlineResult:
    t: np.ndarray
    f: np.ndarray
    loss: np.ndarray
    f_var: np.ndarray
    f_bias: np.ndarray
    loss_cov: np.ndarray
    loss_bias: np.ndarray
    X: np.ndarray          # (Q, D) population nodes
    rho: np.ndarray        # (Q,) their weights
    y: np.ndarray          # (Q,) targets
    params: dict = field(default_factory=dict)

    @property
    def loss_var(self) -> np.ndarray:
        """N Var of the population loss at every step."""
        return np.diag(self.loss_cov).copy()

    @property
    def delta(self) -> np.ndarray:
        return self.y[None, :] - self.f

    def loss_parts(self) -> dict:
        """``N (E L - L_inf)`` split as THEORY.md §3 "Expected loss" does:
        ``variance = 1/2 E_x N Var f`` and ``bias = -E_x[Delta N (E f - f_inf)]``."""
        return {"variance": 0.5 * self.f_var @ self.rho,
                "bias": -(self.delta * self.f_bias) @ self.rho}

    def expected_loss(self, width: int) -> np.ndarray:
        """E L at width N to O(1/N): ``loss + loss_bias / N``."""
        return self.loss + self.loss_bias / width

    def to_xarray(self):
        import xarray as xr
        data = {"f": (("t", "node"), self.f), "f_var": (("t", "node"), self.f_var),
                "f_bias": (("t", "node"), self.f_bias), "loss": (("t",), self.loss),
                "loss_cov": (("t", "t2"), self.loss_cov), "loss_bias": (("t",), self.loss_bias),
                "X": (("node", "dim"), self.X), "rho": (("node",), self.rho),
                "y": (("node",), self.y)}
        coords = {"t": self.t, "t2": self.t}
        return xr.Dataset(data, coords=coords,
                          attrs=netcdf_attrs({"kind": "online theory", **self.params}))
