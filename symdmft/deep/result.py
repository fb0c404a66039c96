"""``InitStats``: the kernels of a deep MLP at initialisation and their N Cov (THEORY.md §3).

Kernel names follow ``sd.simulate``: "Phi1".."PhiL", "G1".."GL", "K". Every array is over
the statistics' points (train then test for ``points='all'``):

* ``mean[name]`` (P, P): the infinite-width kernel (NNGP Phi^L, NTK K).
* ``cov(a, b)`` (P, P, P, P): ``N Cov(a_{mu nu}, b_{alpha beta})``, any two kernels,
  cross-layer covariances included; ``var[name]`` (P, P) its diagonal ``N Var``.
* ``snr[name]`` (P, P): ``mean^2 / (N Var)``, the width at which a kernel entry's noise
  equals its signal (its fluctuation is ``|mean| / sqrt(snr / N)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(eq=False)
class InitStats:
    means: dict
    response: dict | None   # name -> {layer m: (dX/d eps_Phi^m, dX/d eps_G^m)}, each (P^2, P^2)
    kappa: list | None      # LayerNoise of layers 1..L (None: means only)
    f0_var: np.ndarray  # N Var f(0) (P, P): Phi^L / gamma0^2 uncentred, 0 centred
    params: dict = field(default_factory=dict)

    @property
    def names(self) -> list:
        return list(self.means)

    @property
    def L(self) -> int:
        return sum(name.startswith("Phi") for name in self.means)

    @property
    def P(self) -> int:
        return self.means["K"].shape[0]

    @property
    def mean(self) -> dict:
        return self.means

    @property
    def ntk(self) -> np.ndarray:
        return self.means["K"]

    @property
    def nngp(self) -> np.ndarray:
        return self.means[f"Phi{self.L}"]

    def _check(self, name):
        if name not in self.means:
            raise KeyError(f"unknown kernel {name!r}; known: {', '.join(self.names)}")

    def cov(self, a: str, b: str | None = None) -> np.ndarray:
        """N Cov(a, b) as (P, P, P, P) (b defaults to a)."""
        b = a if b is None else b
        self._check(a), self._check(b)
        if self.kappa is None:
            raise ValueError("these statistics were computed with fluctuations=False (means only)")
        P, n = self.P, self.P**2
        out = np.zeros((n, n))
        for m, noise in enumerate(self.kappa, start=1):
            Sa = np.hstack(self.response[a][m])
            Sb = np.hstack(self.response[b][m])
            out += Sa @ noise.joint() @ Sb.T
        return out.reshape(P, P, P, P)

    @cached_property
    def var(self) -> dict:
        """N Var of every kernel entry, (P, P) per kernel."""
        P = self.P
        return {name: np.einsum("ii->i", self.cov(name).reshape(P * P, P * P)).reshape(P, P)
                for name in self.names}

    @cached_property
    def snr(self) -> dict:
        """mean^2 / (N Var) per kernel entry (inf where the entry does not fluctuate)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return {name: np.where(self.var[name] > 0, self.means[name] ** 2 / self.var[name], np.inf)
                    for name in self.names}

    def layer_table(self) -> list:
        """One row per kernel: (name, mean of the diagonal, N Var of the diagonal, SNR), averaged over points."""
        rows = []
        for name in self.names:
            d = np.arange(self.P)
            m, v = self.means[name][d, d], self.var[name][d, d]
            rows.append((name, float(m.mean()), float(v.mean()), float(np.mean(m**2 / v))))
        return rows

    def __repr__(self) -> str:
        head = f"InitStats(L={self.L}, P={self.P}, {self.params.get('activation', '?')})"
        lines = [f"  {n:>6}: mean {m:.4g}  N Var {v:.4g}  SNR {s:.4g}" for n, m, v, s in self.layer_table()]
        return "\n".join([head, *lines])
