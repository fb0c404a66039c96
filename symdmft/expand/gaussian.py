"""Gaussian rules for site averages (THEORY.md §3): Isserlis/Wick for polynomial sites.

For a polynomial in jointly Gaussian, zero-mean sources with covariance C,
``E[prod_i z_i^k_i] = k! [t^k] exp(t^T C t / 2)`` (the moment generating function);
the coefficient is read off the single term ``(t^T C t / 2)^n / n!`` with 2n = |k|.
Non-polynomial averages (tanh, erf, ...) are left as ``Expectation`` nodes.
"""
from __future__ import annotations

from functools import lru_cache
from math import factorial

import sympy as sp

from ..model.expectation import Expectation


def gaussian_moment(powers: tuple, cov: sp.Matrix) -> sp.Expr:
    """E[prod_i z_i^powers_i] for z ~ N(0, cov)."""
    total = sum(powers)
    if total % 2:
        return sp.S.Zero
    return _moment(tuple(powers), sp.ImmutableMatrix(cov))


@lru_cache(maxsize=None)
def _moment(powers: tuple, cov: sp.ImmutableMatrix) -> sp.Expr:
    n = sum(powers) // 2
    t = sp.symbols(f"t0:{len(powers)}")
    quad = sp.expand((sp.Matrix(t).T * cov * sp.Matrix(t))[0] / 2)
    coeff = sp.Poly(quad ** n, *t).coeff_monomial(sp.Mul(*[ti ** k for ti, k in zip(t, powers)]))
    return sp.expand(coeff / factorial(n) * sp.Mul(*[factorial(k) for k in powers]))


def evaluate_polynomial(expr: sp.Expr, sources: list, cov: sp.Matrix) -> sp.Expr:
    """Replace every ``Expectation`` of a polynomial in ``sources`` by its Gaussian value."""
    def rule(arg):
        poly = sp.Poly(sp.expand(arg), *sources)
        return sp.Add(*[c * gaussian_moment(m, cov) for m, c in poly.terms()])
    return expr.replace(lambda e: isinstance(e, Expectation) and e.args[0].is_polynomial(*sources),
                        lambda e: rule(e.args[0]))
