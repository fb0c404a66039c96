"""The result of ``sd.solve``: infinite-width dynamics and finite-width fluctuations.

Shapes follow ARCHITECTURE.md: ``f`` (steps+1, P_all) train then test points;
``f_cov`` (steps+1, P_all, steps+1, P_all) = N Cov[f_mu(t), f_nu(s)] at leading order;
kernels on training points (steps+1, P, P) with their N Var. Kernel names: ``K`` (the
NTK, THEORY.md §1), ``Phi1`` (feature kernel), ``G1`` (gradient kernel).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io import netcdf_attrs


@dataclass
class Result:
    t: np.ndarray
    f: np.ndarray
    f_cov: np.ndarray
    kernels: dict
    kernels_var: dict
    y: np.ndarray
    params: dict = field(default_factory=dict)
    f_bias: np.ndarray | None = None        # N (E f - f_inf), (steps+1, P_all), if solved
    kernels_bias: dict | None = None        # N (E K - K_inf) per kernel, if solved
    y_test: np.ndarray | None = None        # test targets, if known (test loss only)

    @property
    def ntk(self) -> np.ndarray:
        return self.kernels["K"]

    @property
    def sharpness(self) -> np.ndarray:
        """lambda_max of the NTK at every step (issue 6; ``observables.sharpness``)."""
        from ..observables.sharpness import sharpness
        return sharpness(self.ntk)

    @property
    def ntk_var(self) -> np.ndarray:
        return self.kernels_var["K"]

    @property
    def ntk_bias(self) -> np.ndarray:
        if self.kernels_bias is None:
            raise AttributeError("no mean correction: solve with bias=True")
        return self.kernels_bias["K"]

    @property
    def f_var(self) -> np.ndarray:
        """N Var f_mu(t), (steps+1, P_all): the diagonal of ``f_cov``."""
        n_t, n_p = self.f.shape
        return np.einsum("tmtm->tm", self.f_cov.reshape(n_t, n_p, n_t, n_p))

    @property
    def y_all(self) -> np.ndarray:
        """Targets of all points, NaN where a test point has none."""
        P_test = self.f.shape[1] - self.y.shape[0]
        rest = np.full(P_test, np.nan) if self.y_test is None else self.y_test
        return np.concatenate([self.y, rest])

    @property
    def delta(self) -> np.ndarray:
        return self.y[None, :] - self.f[:, : self.y.shape[0]]

    def to_xarray(self):
        import xarray as xr
        n_t, n_p = self.f.shape
        P = self.y.shape[0]
        coords = {"t": self.t, "t2": self.t, "point": np.arange(n_p), "point2": np.arange(n_p),
                  "i": np.arange(P), "j": np.arange(P)}
        data = {
            "f": (("t", "point"), self.f),
            "f_var": (("t", "point"), self.f_var),
            "f_cov": (("t", "point", "t2", "point2"), self.f_cov),
            "y": (("point",), self.y_all),
        }
        for name, mean in self.kernels.items():
            key = "ntk" if name == "K" else name
            data[key] = (("t", "i", "j"), mean)
            data[key + "_var"] = (("t", "i", "j"), self.kernels_var[name])
        if self.f_bias is not None:
            data["f_bias"] = (("t", "point"), self.f_bias)
            for name, b in self.kernels_bias.items():
                data[("ntk" if name == "K" else name) + "_bias"] = (("t", "i", "j"), b)
        attrs = netcdf_attrs({"kind": "theory", **self.params})
        return xr.Dataset(data, coords=coords, attrs=attrs)
