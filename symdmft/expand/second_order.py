"""Saddle point and second variation of the action, by differentiation (THEORY.md §3).

At the saddle (q^ = 0) and with real conjugate fields,

    dS/dq^_a            = q_a - <psi_a>                       (saddle: q = <psi>)
    d2S/dq^_a dq^_b     = <psi_a psi_b> - <psi_a><psi_b>      = kappa_ab
    d2S/dq^_a dq_b      = delta_ab - <d psi_a / d q_b>        = (I - D)_ab

(THEORY.md writes ``-(I - D)`` for the mixed block: its conjugate field carries the
opposite sign; the propagator ``(I - D)^{-1} kappa (I - D)^{-T}`` is the same.) Every
entry below is produced by ``sympy.diff`` of the action, never typed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .gaussian import evaluate_polynomial


def _at_saddle(expr, qhat):
    return expr.subs({x: 0 for x in qhat})


@dataclass(frozen=True)
class Expansion:
    """Saddle equations and Hessian blocks of an action in (q, q^)."""
    action: sp.Expr
    saddle: tuple            # Eq(q_a, <psi_a>)
    kappa: sp.Matrix
    I_minus_D: sp.Matrix

    @property
    def D(self) -> sp.Matrix:
        return sp.eye(self.kappa.shape[0]) - self.I_minus_D


def expand(action: sp.Expr, q, qhat) -> Expansion:
    """Differentiate ``action`` once and twice and evaluate at q^ = 0."""
    grad = [sp.diff(action, a) for a in qhat]
    saddle = tuple(sp.Eq(x, sp.expand(x - _at_saddle(g, qhat))) for x, g in zip(q, grad))
    n = len(q)
    kappa = sp.Matrix(n, n, lambda i, j: _at_saddle(sp.diff(grad[i], qhat[j]), qhat))
    mixed = sp.Matrix(n, n, lambda i, j: _at_saddle(sp.diff(grad[i], q[j]), qhat))
    return Expansion(action, saddle, kappa, mixed)


def evaluate_gaussian(expansion: Expansion, sources, cov) -> Expansion:
    """Close every polynomial site average with Isserlis' theorem (linear networks)."""
    ev = lambda e: sp.expand(evaluate_polynomial(e, list(sources), cov))   # noqa: E731
    return Expansion(expansion.action,
                     tuple(sp.Eq(s.lhs, ev(s.rhs)) for s in expansion.saddle),
                     expansion.kappa.applyfunc(ev), expansion.I_minus_D.applyfunc(ev))
