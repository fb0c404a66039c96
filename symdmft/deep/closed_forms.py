"""Closed-form two-point Gaussian expectations, as SymPy expressions (THEORY.md §3).

For ``(h_1, h_2) ~ N(0, [[c11, c12], [c12, c22]])`` (and ``h ~ N(0, c)`` on the diagonal)
the NNGP map ``E[phi(h_1) phi(h_2)]`` and the gradient map ``E[phi'(h_1) phi'(h_2)]``:

* polynomial activations (``linear`` included): derived by Isserlis' theorem with the
  package's Gaussian rule (``symdmft.expand.gaussian``); linear gives c12 and 1.
* ``erf``: the arcsine kernel (Williams 1997),
  ``(2/pi) asin(2 c12 / sqrt((1 + 2 c11)(1 + 2 c22)))``, and since
  ``erf' = 2 exp(-h^2) / sqrt(pi)``, ``E[erf' erf'] = (4/pi) det(I + 2C)^(-1/2)``.
* ``relu``: the arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009), with
  ``theta = acos(c12 / sqrt(c11 c22))``: ``(sqrt(c11 c22 - c12^2) + (pi - theta) c12) / (2 pi)``
  and ``(pi - theta) / (2 pi)``.

Their derivatives with respect to (c11, c12, c22) are the Price-theorem sensitivities
(``d E/d c12 = E[d_1 d_2 F]``, ``d E/d c11 = E[d_1^2 F] / 2``) and are taken by ``sympy.diff``
of these expressions. For relu this is the only correct route: the regularised second
derivative of relu drops a Dirac mass that carries weight in the Price formula.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from ..arch.activations import BUILTIN, h
from ..expand.gaussian import evaluate_polynomial
from ..model.expectation import Expectation, Source

c11, c22, c = sp.symbols("c11 c22 c", positive=True)
c12 = sp.Symbol("c12", real=True)
PAIR_ARGS = (c11, c12, c22)


@dataclass(frozen=True)
class PairForm:
    """E[F(h_1) F(h_2)] off the diagonal (in c11, c12, c22) and on it (in c)."""
    off: sp.Expr
    diag: sp.Expr


def _theta():
    return sp.acos(c12 / sp.sqrt(c11 * c22))


def _erf_forms():
    nngp = PairForm(2 / sp.pi * sp.asin(2 * c12 / sp.sqrt((1 + 2 * c11) * (1 + 2 * c22))),
                    2 / sp.pi * sp.asin(2 * c / (1 + 2 * c)))
    grad = PairForm(4 / sp.pi / sp.sqrt((1 + 2 * c11) * (1 + 2 * c22) - 4 * c12**2),
                    4 / sp.pi / sp.sqrt(1 + 4 * c))
    return nngp, grad


def _relu_forms():
    th = _theta()
    nngp = PairForm((sp.sqrt(c11 * c22 - c12**2) + (sp.pi - th) * c12) / (2 * sp.pi), c / 2)
    grad = PairForm((sp.pi - th) / (2 * sp.pi), sp.Rational(1, 2))
    return nngp, grad


def _isserlis_pair(fn: sp.Expr) -> PairForm:
    """E[fn(h1) fn(h2)] and E[fn(h)^2] for a polynomial fn, by Isserlis' theorem."""
    s1, s2, s = Source("s1", real=True), Source("s2", real=True), Source("s", real=True)
    off = evaluate_polynomial(Expectation(sp.expand(fn.subs(h, s1) * fn.subs(h, s2))), [s1, s2],
                              sp.Matrix([[c11, c12], [c12, c22]]))
    diag = evaluate_polynomial(Expectation(sp.expand(fn.subs(h, s) ** 2)), [s], sp.Matrix([[c]]))
    return PairForm(sp.expand(off), sp.expand(diag))


def is_relu(phi: sp.Expr) -> bool:
    return phi == BUILTIN["relu"] or phi == sp.Piecewise((h, h > 0), (0, True))


@lru_cache(maxsize=None)
def closed_pair_forms(phi: sp.Expr):
    """(nngp, grad) PairForms for phi if a closed form is known, else None."""
    if phi == BUILTIN["erf"]:
        return _erf_forms()
    if is_relu(phi):
        return _relu_forms()
    if phi.is_polynomial(h):
        return _isserlis_pair(phi), _isserlis_pair(sp.diff(phi, h))
    return None


def gradient(form: PairForm) -> tuple[tuple[sp.Expr, ...], sp.Expr]:
    """Price sensitivities by differentiation: (dF/dc11, dF/dc12, dF/dc22) and dF_diag/dc."""
    return tuple(sp.diff(form.off, x) for x in PAIR_ARGS), sp.diff(form.diag, c)
