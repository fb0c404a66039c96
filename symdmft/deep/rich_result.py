"""``RichResult``: the infinite-width rich-regime solution of a deep MLP (THEORY.md §2).

The order parameters of the deep site process are two-time objects over all points (train
then test, test points carry zero weight in the loss). For a net with L hidden layers:

* ``Phi[l-1]`` = Phi^l(t, s), ``G[l-1]`` = G^l(t, s) for l = 1..L, each
  (steps+1, P_all, steps+1, P_all);
* ``A[l-1]`` = A^l(t, s), ``B[l-1]`` = B^l(t, s) for l = 1..L-1 (A^0 = B^L = 0), same shape;
  A is strictly causal, B has an equal-time part (THEORY.md §2);
* ``f`` (steps+1, P_all) by the correlator rule; ``convergence``: how the saddle was found
  (``iterations``, ``residual``, ``reason``; closed forms report 0 iterations).

The equal-time views ``kernels`` ("Phi1".."PhiL", "G1".."GL", "K", training points) follow
the names of ``sd.simulate`` so a theory and an ensemble compare key by key. Finite-width
fields (``f_cov``, ``kernels_var``) are filled by the propagator (THEORY.md §3) when solved.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def equal_time(M: np.ndarray) -> np.ndarray:
    """(T, P, T, P) two-time array -> (T, P, P) equal-time slices M(t, t)."""
    return np.einsum("tmtn->tmn", M)


@dataclass(eq=False)
class RichResult:
    t: np.ndarray
    f: np.ndarray
    Phi: list
    G: list
    A: list
    B: list
    y: np.ndarray
    Kx: np.ndarray                           # (P_all, P_all) input Gram matrix Phi^0
    convergence: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    f_cov: np.ndarray | None = None          # N Cov f, (steps+1, P_all, steps+1, P_all)
    kernels_var: dict | None = None          # N Var of equal-time kernel entries, (steps+1, P, P)
    y_test: np.ndarray | None = None
    f_bias: np.ndarray | None = None         # N (E f - f_inf), (steps+1, P_all), if solved (bias=True)
    kernels_bias: dict | None = None         # N (E K - K_inf) per equal-time kernel, (steps+1, P, P)

    @property
    def L(self) -> int:
        return len(self.Phi)

    @property
    def P(self) -> int:
        return self.y.shape[0]

    @property
    def kernels(self) -> dict:
        """Equal-time kernels on training points: Phi1..PhiL, G1..GL and the NTK K (THEORY.md §1)."""
        P = self.P
        out = {}
        for l in range(1, self.L + 1):
            out[f"Phi{l}"] = equal_time(self.Phi[l - 1])[:, :P, :P]
        for l in range(1, self.L + 1):
            out[f"G{l}"] = equal_time(self.G[l - 1])[:, :P, :P]
        out["K"] = self.ntk_all[:, :P, :P]
        return out

    @property
    def ntk_all(self) -> np.ndarray:
        """K(t) = sum_{l=0..L} G^{l+1}(t,t) * Phi^l(t,t) on all points (G^{L+1} = 1, Phi^0 = Kx)."""
        K = equal_time(self.G[0]) * self.Kx[None]
        for l in range(1, self.L):
            K = K + equal_time(self.G[l]) * equal_time(self.Phi[l - 1])
        return K + equal_time(self.Phi[self.L - 1])

    @property
    def ntk(self) -> np.ndarray:
        return self.ntk_all[:, :self.P, :self.P]

    @property
    def delta(self) -> np.ndarray:
        return self.y[None, :] - self.f[:, :self.P]

    def _no_fluctuations(self) -> AttributeError:
        why = self.params.get("fluctuations", "not computed")
        return AttributeError(f"no finite-width fluctuations in this result: {why}")

    def to_xarray(self):
        """The same variables as ``sd.solve``'s two-layer results (f, f_var, f_cov, kernels and
        their N Var, y), so ``symdmft compare`` reads either; the two-time order parameters as
        ``Phi{l}_2t``, ``G{l}_2t``, ``A{l}_2t``, ``B{l}_2t``. Layer kernel variances computed at
        some steps only (long deep linear runs) are stored at those, coordinate ``t_kernel``.
        Without fluctuations (a problem too large for the dense nonlinear propagator) the
        variances are left out and ``attrs["fluctuations"]`` says why."""
        import xarray as xr
        from ..io import netcdf_attrs
        n_t, n_p = self.f.shape
        P = self.P
        rest = np.full(n_p - P, np.nan) if self.y_test is None else self.y_test
        coords = {"t": self.t, "t2": self.t, "point": np.arange(n_p), "point2": np.arange(n_p),
                  "i": np.arange(P), "j": np.arange(P)}
        two_time = ("t", "point", "t2", "point2")
        data = {"f": (("t", "point"), self.f), "y": (("point",), np.concatenate([self.y, rest]))}
        for name, mean in self.kernels.items():
            data["ntk" if name == "K" else name] = (("t", "i", "j"), mean)
        if self.f_cov is not None:
            data["f_var"] = (("t", "point"), self.f_var)
            data["f_cov"] = (two_time, self.f_cov)
            for name, var in self.kernels_var.items():
                done = ~np.isnan(var).all(axis=(1, 2))          # steps computed (deep linear, long runs)
                if done.all():
                    data[("ntk" if name == "K" else name) + "_var"] = (("t", "i", "j"), var)
                else:
                    coords["t_kernel"] = self.t[done]
                    data[name + "_var"] = (("t_kernel", "i", "j"), var[done])
        if self.f_bias is not None:
            data["f_bias"] = (("t", "point"), self.f_bias)
            for name, b in self.kernels_bias.items():
                data[("ntk" if name == "K" else name) + "_bias"] = (("t", "i", "j"), b)
        for kind in ("Phi", "G", "A", "B"):
            for l, M in enumerate(getattr(self, kind), start=1):
                data[f"{kind}{l}_2t"] = (two_time, M)
        attrs = netcdf_attrs({"kind": "theory", **self.params, **{f"convergence_{k}": v for k, v in
                                                                    self.convergence.items()}})
        return xr.Dataset(data, coords=coords, attrs=attrs)

    @property
    def f_var(self) -> np.ndarray:
        if self.f_cov is None:
            raise self._no_fluctuations()
        n_t, n_p = self.f.shape
        return np.einsum("tmtm->tm", self.f_cov.reshape(n_t, n_p, n_t, n_p))

    @property
    def ntk_var(self) -> np.ndarray:
        if self.kernels_var is None:
            raise self._no_fluctuations()
        return self.kernels_var["K"]

    @property
    def ntk_bias(self) -> np.ndarray:
        if self.kernels_bias is None:
            raise AttributeError("no mean correction: solve with bias=True")
        return self.kernels_bias["K"]
