"""Activations as SymPy expressions in the pre-activation symbol ``h``.

The front end accepts a built-in name or any SymPy expression / string in ``h``;
derivatives phi', phi'' are always taken by ``sympy.diff`` (THEORY.md §2), so a new
activation needs no hand-written code anywhere in the pipeline.
"""
from __future__ import annotations

import sympy as sp

h = sp.Symbol("h", real=True)

BUILTIN = {
    "linear": h,
    "tanh": sp.tanh(h),
    "erf": sp.erf(h),
    "relu": sp.Max(h, 0),
    "softplus": sp.log(1 + sp.exp(h)),
    "sin": sp.sin(h),
}


def parse_activation(activation) -> sp.Expr:
    """Return phi(h) as a SymPy expression whose only free symbol is ``h``.

    Raises ``ValueError`` naming the parameter for unknown names, unparsable strings,
    and expressions in other symbols.
    """
    if isinstance(activation, str):
        key = activation.strip()
        if key in BUILTIN:
            return BUILTIN[key]
        try:
            expr = sp.sympify(key, locals={"h": h})
        except (sp.SympifyError, SyntaxError, TypeError) as err:
            raise ValueError(
                f"activation={activation!r} is neither a built-in name "
                f"({', '.join(sorted(BUILTIN))}) nor a SymPy expression in h: {err}") from None
    elif isinstance(activation, sp.Basic):
        expr = activation.subs({s: h for s in activation.free_symbols if s.name == "h"})
    else:
        raise ValueError(f"activation must be a name or a SymPy expression in h, got {type(activation).__name__}")
    if not isinstance(expr, sp.Expr):
        raise ValueError(f"activation={activation!r} is not a scalar expression in h")
    extra = expr.free_symbols - {h}
    if extra:
        raise ValueError(
            f"activation={activation!r} may only depend on the symbol h; it also uses "
            f"{', '.join(sorted(map(str, extra)))}. Unknown names are not built-in activations "
            f"({', '.join(sorted(BUILTIN))}).")
    if h not in expr.free_symbols:
        raise ValueError(f"activation={activation!r} does not depend on h")
    return expr


#: SymPy functions whose presence makes phi' jump somewhere (a "kink").
KINKS = (sp.Piecewise, sp.Heaviside, sp.Max, sp.Min, sp.Abs, sp.sign, sp.DiracDelta, sp.floor,
         sp.ceiling)


def has_kink(expr: sp.Expr) -> bool:
    """Whether phi may have a kink (relu, |h|, ...): then phi'' carries a Dirac mass."""
    return expr.has(*KINKS)


def refuse_kink(expr: sp.Expr, name: str, solver: str, evidence: str, hint: str = "") -> None:
    """Raise ``NotImplementedError`` if ``expr`` has a kink: ``solver`` differentiates paths, and
    the Dirac mass of phi'' (the sites crossing the kink) is invisible to it (``regularise``).
    ``evidence``: what was measured; ``hint``: an escape besides a smooth activation."""
    if has_kink(expr):
        raise NotImplementedError(
            f"activation={name!r} has a kink: phi' jumps, so phi'' has a Dirac mass that the "
            f"pathwise derivatives of {solver} cannot see (the sites crossing the kink); "
            f"{evidence}. Use a smooth activation (softplus, erf, tanh, ...){hint}")


def regularise(expr: sp.Expr) -> sp.Expr:
    """Make a derivative of a kinked activation printable: Heaviside -> step, DiracDelta -> 0.

    Dropping the Dirac part of relu'' is harmless in phi itself and in the forward pass, but
    NOT in the pathwise tangents of the propagator: sites whose preactivation crosses the kink
    contribute E[delta(h) F] = p(0) E[F | h = 0] to the site averages' sensitivities, which a
    pathwise derivative cannot see (relu's N Var f came out 8-14% low against trained networks
    at t = 2). The solvers therefore refuse kinked activations (``has_kink``) for finite-width
    outputs unless told otherwise.
    """
    expr = expr.replace(sp.DiracDelta, lambda *a: sp.S.Zero)
    return expr.replace(sp.Heaviside, lambda x, *a: sp.Piecewise((1, x > 0), (0, True)))


def activation_name(expr: sp.Expr) -> str:
    """The built-in name of ``expr`` if it is one, else its string form."""
    for name, builtin in BUILTIN.items():
        if expr == builtin:
            return name
    return sp.sstr(expr)
