"""The MLP architecture of THEORY.md §1, shared by the theory and the simulator.

One object describes the network; the theory (``symdmft.model``) builds its site
process from it and the simulator (``symdmft.simulate``) its forward and update rules,
so the two cannot drift apart (ARCHITECTURE.md habit 6).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sympy as sp

from .activations import activation_name, h, parse_activation, regularise


def check_positive(name: str, value, integer: bool = False):
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite positive number."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or not math.isfinite(float(value)) or value <= 0:
        kind = "a positive integer" if integer else "a finite number > 0"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class MLP:
    """Mean-field MLP with ``hidden_layers`` hidden layers (THEORY.md §1).

    activation: phi(h) as a SymPy expression in ``h``; gamma0: feature-learning strength;
    center: train f(t) - f(0) with the initial network frozen (needed for the lazy limit).
    """
    hidden_layers: int
    activation: sp.Expr
    gamma0: float
    center: bool = False

    @property
    def phi(self) -> sp.Expr:
        return self.activation

    @cached_property
    def derivatives(self) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
        """(phi, phi', phi'') by ``sympy.diff``, regularised for printing."""
        return tuple(regularise(sp.diff(self.activation, h, k)) for k in range(3))

    @property
    def activation_name(self) -> str:
        return activation_name(self.activation)

    def numpy_derivatives(self, order: int) -> tuple:
        """phi, phi', ..., phi^(order) as NumPy/SciPy callables (sympy.diff, regularised, then
        lambdify; SciPy for erf), each returning a float array of its argument's shape
        (the lambdified derivative of a linear activation is a bare constant)."""
        def elementwise(expr):
            fn = sp.lambdify(h, expr, modules=["scipy", "numpy"])
            return lambda x: np.broadcast_to(np.asarray(fn(x), dtype=float), np.shape(x))
        return tuple(elementwise(regularise(sp.diff(self.activation, h, k)))
                     for k in range(order + 1))

    def numpy_functions(self):
        """phi, phi' as elementwise NumPy callables (used by the simulators)."""
        return self.numpy_derivatives(1)

    def describe(self) -> dict:
        """Plain parameters for provenance records."""
        return {"hidden_layers": self.hidden_layers, "activation": self.activation_name,
                "gamma0": self.gamma0, "center": int(self.center)}


def mlp(hidden_layers: int = 1, activation="tanh", gamma0: float = 1.0, center: bool = False) -> MLP:
    """Build the MLP of THEORY.md §1: ``sd.mlp(hidden_layers=1, activation="tanh", gamma0=1.0)``."""
    hidden_layers = check_positive("hidden_layers", hidden_layers, integer=True)
    gamma0 = check_positive("gamma0", gamma0)
    return MLP(hidden_layers, parse_activation(activation), gamma0, bool(center))
