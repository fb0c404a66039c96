"""The record of a simulated ensemble (THEORY.md §5: the ground truth theory is compared to)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io import netcdf_attrs


@dataclass
class SimResult:
    """Outputs and equal-time kernels of E trained width-N networks.

    t: (steps+1,) times t_k = k eta; index k is the state before the k-th update.
    f: (E, steps+1, P_all) outputs on train then test points (f(t) - f(0) if centred).
    kernels: "K" (the NTK of THEORY.md §1), "Phi1".."PhiL", "G1".."GL", each
    (E, steps+1, P, P) on the training points. ntk is kernels["K"].
    y: (P_all,) targets, NaN on test points. params: provenance (width, ensemble, seed,
    eta, steps, the network's and the data's parameters).
    """
    t: np.ndarray
    f: np.ndarray
    kernels: dict
    y: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def ntk(self) -> np.ndarray:
        return self.kernels["K"]

    @property
    def sharpness(self) -> np.ndarray:
        """lambda_max of the NTK at every step (issue 6; ``observables.sharpness``)."""
        from ..observables.sharpness import sharpness
        return sharpness(self.ntk)

    def to_xarray(self):
        """An ``xarray.Dataset``: f (network, t, point), y (point), ntk and each kernel (network, t, i, j).

        ``attrs`` are ``params`` plus ``kind="simulation"``, all netCDF-storable.
        """
        import xarray as xr

        E, T, P_all = self.f.shape
        P = self.ntk.shape[-1]
        coords = {"network": np.arange(E), "t": self.t, "point": np.arange(P_all),
                  "i": np.arange(P), "j": np.arange(P)}
        dims = ("network", "t", "i", "j")
        data_vars = {"f": (("network", "t", "point"), self.f), "y": (("point",), self.y),
                     "ntk": (dims, self.ntk)}
        data_vars.update({name: (dims, value) for name, value in self.kernels.items() if name != "K"})
        attrs = netcdf_attrs(self.params)
        attrs["kind"] = "simulation"
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)
