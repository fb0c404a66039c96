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


def regularise(expr: sp.Expr) -> sp.Expr:
    """Make a derivative of a kinked activation printable: Heaviside -> step, DiracDelta -> 0.

    The Dirac part of relu'' sits on a set of measure zero for the continuous sources of
    THEORY.md §2, so dropping it leaves every site average unchanged.
    """
    expr = expr.replace(sp.DiracDelta, lambda *a: sp.S.Zero)
    return expr.replace(sp.Heaviside, lambda x, *a: sp.Piecewise((1, x > 0), (0, True)))


def activation_name(expr: sp.Expr) -> str:
    """The built-in name of ``expr`` if it is one, else its string form."""
    for name, builtin in BUILTIN.items():
        if expr == builtin:
            return name
    return sp.sstr(expr)
