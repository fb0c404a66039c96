"""Site averages as a SymPy node that knows how derivatives pass through it.

``Expectation(F)`` is the average of F over the Gaussian sources of the site process
(THEORY.md §2). It is linear, pulls out factors that do not involve a source, and
differentiates under the integral sign: for a two-layer network the source covariances
(Kx and 1) do not depend on the order parameters, so ``d/dq E[F] = E[dF/dq]``. (Deep
networks add Price's rule for the covariance dependence.)
"""
from __future__ import annotations

import sympy as sp


class Source(sp.Symbol):
    """A Gaussian source of the site process (u_mu, w(0))."""


def _has_source(expr) -> bool:
    return bool(getattr(expr, "atoms", lambda *a: ())(Source))


class Expectation(sp.Function):
    """E_site[arg]; ``doit`` is left to a Gaussian rule (``symdmft.expand.gaussian``)."""

    @classmethod
    def eval(cls, arg):
        if not _has_source(arg):
            return arg
        if isinstance(arg, sp.Add):
            return sp.Add(*[cls(t) for t in arg.args])
        if isinstance(arg, sp.Mul):
            const = [f for f in arg.args if not _has_source(f)]
            if const:
                return sp.Mul(*const) * cls(sp.Mul(*[f for f in arg.args if _has_source(f)]))
        return None

    def _eval_derivative(self, x):
        return Expectation(sp.diff(self.args[0], x))

    def _latex(self, printer, exp=None):
        tex = r"\left\langle %s \right\rangle" % printer._print(self.args[0])
        return tex if exp is None else "%s^{%s}" % (tex, exp)

    def _sympystr(self, printer):
        return "E[%s]" % printer._print(self.args[0])
