"""The single-site process of a two-layer network (THEORY.md §2, two-layer form).

At infinite width each hidden neuron is an independent draw of

    h(k+1) = h(k) + eta gamma0 w(k) Kx (Delta(k) * phi'(h(k)))
    w(k+1) = w(k) + eta gamma0 sum_mu Delta_mu(k) phi(h_mu(k))

with ``h(0) = u ~ N(0, Kx)`` and ``w(0) ~ N(0, 1)``; at finite width these are exactly the
per-neuron equations (neurons interact only through Delta). The site observables whose
averages are the order parameters (THEORY.md §3) are the features

    phi_mu = phi(h_mu),   g_mu = phi'(h_mu) w,   out_mu = w phi(h_mu) / gamma0

so that ``f = <out>``, ``Phi^1 = <phi phi^T>``, ``G^1 = <g g^T>`` and
``K = Phi^1 + G^1 * Kx``. Everything is written as IR statements (``symdmft.lower.ir``)
whose expressions come from the activation by ``sympy.diff``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from ..arch.activations import h as h_symbol
from ..arch.mlp import MLP
from ..lower.ir import TRAIN, Block, Contract, Pointwise, Scalar, Total, make_block

# Symbols of the site process. Names are the array names of the generated code.
h, w, delta = sp.symbols("h w delta", real=True)
eta, gamma0 = sp.symbols("eta gamma0", positive=True)
e, s, r, b = sp.symbols("e s r b", real=True)          # intermediates of one step
h_next, w_next = sp.symbols("h_next w_next", real=True)

STATE = (("h", "vec"), ("w", "scalar"))                  # site state and its kinds
FEATURES = ("phi", "g", "out")                           # per-point site observables
KERNELS = (("Phi1", "phi"), ("G1", "g"))                 # kernel = <feature feature^T>


def with_ntk(kernels: dict, kx_train, axes: tuple = (-2, -1)) -> dict:
    """Add the NTK ``K = G^2 Phi^1 + G^1 Phi^0 = Phi1 + G1 * Kx`` (THEORY.md §1, L = 1).

    Works for means, site samples, gains, tangents and corrections alike (K is linear in
    the kernels); ``axes`` are where the (train, train) point pair sits in the arrays.
    """
    shape = [1] * kernels["G1"].ndim
    shape[axes[0]], shape[axes[1]] = kx_train.shape
    return {**kernels, "K": kernels["Phi1"] + kernels["G1"] * kx_train.reshape(shape)}


@dataclass(frozen=True)
class TwoLayerSite:
    """Site process of ``net`` (an ``MLP`` with one hidden layer)."""
    net: MLP
    title = "two-layer network, single-site process (THEORY.md §2-3)"
    kernels = KERNELS

    def __post_init__(self):
        if self.net.hidden_layers != 1:
            raise NotImplementedError(
                f"the symbolic site process is implemented for hidden_layers=1 (two-layer "
                f"networks); got hidden_layers={self.net.hidden_layers}. Deep nets: sd.solve, whose "
                f"action Hessian is built from site averages (symdmft.deep.site_action, "
                f"docs/deep_fluctuations.md)")

    def activation(self, order: int = 0, at: sp.Expr = h) -> sp.Expr:
        """phi^(order) evaluated at ``at`` (derivatives by sympy.diff)."""
        return self.net.derivatives[order].subs(h_symbol, at)

    @cached_property
    def step(self) -> Block:
        """One gradient-descent step of the site (THEORY.md §2)."""
        phi, dphi = self.activation(0), self.activation(1)
        statements = [
            Pointwise("e", delta * dphi, over=TRAIN),        # error times phi'(h)
            Contract("s", "e"),                              # s_mu = sum_a Kx_mu,a e_a
            Pointwise("r", delta * phi, over=TRAIN),
            Total("b", "r"),                                 # b = sum_a Delta_a phi(h_a)
            Pointwise("h_next", h + eta * gamma0 * w * s),
            Scalar("w_next", w + eta * gamma0 * b),
        ]
        kinds = {"h": "vec", "w": "scalar", "delta": "data", "e": "vec", "s": "vec",
                 "r": "vec", "b": "scalar", "h_next": "vec", "w_next": "scalar",
                 "eta": "const", "gamma0": "const"}
        return make_block("step", statements, kinds)

    @cached_property
    def features(self) -> Block:
        """The site observables phi, g (backward field) and out = w phi / gamma0."""
        phi, dphi = self.activation(0), self.activation(1)
        statements = [
            Pointwise("phi", phi),
            Pointwise("g", dphi * w),
            Pointwise("out", w * phi / gamma0),
        ]
        kinds = {"h": "vec", "w": "scalar", "phi": "vec", "g": "vec", "out": "vec",
                 "gamma0": "const"}
        return make_block("features", statements, kinds)

    def latex(self) -> str:
        """The site process as LaTeX equations, data indices written out."""
        from ..lower.render import block_latex
        return block_latex(self.step) + "\n" + block_latex(self.features)
