"""``sd.derive(net)``: the symbolic stages of the pipeline, each one inspectable.

    site process (IR) -> tangent (JVP) equations -> action S[q, q^] -> saddle, kappa, I - D

``Derivation.action/.saddle/.hessian`` hold the generic form (two representative order
parameters, opaque observables), ``instance(P, steps)`` the explicit blocks of a small
problem (closed by Isserlis' theorem for polynomial activations), ``latex()`` all of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from ..lower import lower
from ..lower.render import block_latex
from ..model.action import Unrolled, generic_action, unroll
from ..model.site import TwoLayerSite
from .second_order import Expansion, evaluate_gaussian, expand


@dataclass(frozen=True)
class Instance:
    """Explicit saddle equations and Hessian blocks of a small problem."""
    unrolled: Unrolled
    expansion: Expansion

    kappa = property(lambda self: self.expansion.kappa)
    D = property(lambda self: self.expansion.D)
    saddle = property(lambda self: self.expansion.saddle)
    symbols = property(lambda self: self.unrolled.symbols)


@dataclass(frozen=True)
class Derivation:
    net: object

    @cached_property
    def site(self) -> TwoLayerSite:
        return TwoLayerSite(self.net)

    @cached_property
    def lowered(self):
        return lower(self.site)

    @cached_property
    def generic(self) -> Expansion:
        S, q, qhat = generic_action()
        return expand(S, q, qhat)

    @property
    def action(self) -> sp.Expr:
        return self.generic.action

    @property
    def saddle(self) -> tuple:
        return self.generic.saddle

    @property
    def hessian(self) -> dict:
        return {"kappa": self.generic.kappa, "I_minus_D": self.generic.I_minus_D}

    def instance(self, P: int = 1, steps: int = 2, evaluate: bool = True) -> Instance:
        """Blocks for P training points and ``steps`` steps; Gaussian-closed if polynomial."""
        U = unroll(self.site, P, steps)
        expansion = expand(U.action, U.q, U.qhat)
        if evaluate and self.net.activation.is_polynomial():
            expansion = evaluate_gaussian(expansion, U.sources, U.source_cov)
        return Instance(U, expansion)

    def __str__(self) -> str:
        g = self.generic
        lines = [f"symdmft derivation: {self.lowered.title}",
                 f"activation phi(h) = {self.net.activation}", "", "site process and tangents (IR):",
                 repr(self.lowered), "", f"action: S = {sp.sstr(g.action)}", "", "saddle:"]
        lines += [f"  {sp.sstr(e)}" for e in g.saddle]
        lines += ["", "kappa = d2S/dqhat dqhat at qhat = 0:", f"  {sp.sstr(g.kappa)}",
                  "", "I - D = d2S/dqhat dq at qhat = 0:", f"  {sp.sstr(g.I_minus_D)}",
                  "", "propagator: N Cov(q) -> (I - D)^-1 kappa (I - D)^-T"]
        return "\n".join(lines)

    def latex(self) -> str:
        g, L = self.generic, self.lowered
        parts = [r"\textbf{Site process} (THEORY.md \S2)", "$$" + block_latex(L.step) + "$$",
                 "$$" + block_latex(L.features) + "$$",
                 r"\textbf{Tangent (JVP) equations}", "$$" + block_latex(L.tangent_step) + "$$",
                 "$$" + block_latex(L.tangent_features) + "$$",
                 r"\textbf{Action} (THEORY.md \S3)", "$$S = " + sp.latex(g.action) + "$$",
                 r"\textbf{Saddle point}"]
        parts += ["$$" + sp.latex(e) + "$$" for e in g.saddle]
        parts += [r"\textbf{Second variation}",
                  r"$$\kappa = " + sp.latex(g.kappa) + "$$",
                  r"$$I - D = " + sp.latex(g.I_minus_D) + "$$",
                  r"$$\Sigma_q = (I - D)^{-1} \kappa (I - D)^{-T}$$"]
        return "\n".join(parts)


def derive(net) -> Derivation:
    """The symbolic derivation for ``net`` (see ``Derivation``)."""
    return Derivation(net)
