"""Render IR blocks as LaTeX with explicit data indices (for ``derive(net).latex()``)."""
from __future__ import annotations

import sympy as sp

from .ir import Block, Contract, Pointwise, Scalar, Total


def _indexed(expr: sp.Expr, kinds: dict, index: str) -> sp.Expr:
    subs = {sp.Symbol(n, real=True): sp.Symbol(f"{n}_{{{index}}}")
            for n, k in kinds.items() if k in ("vec", "data")}
    return expr.xreplace(subs)


def statement_latex(stmt, kinds: dict) -> str:
    if isinstance(stmt, Pointwise):
        return f"{stmt.target}_{{\\mu}} = {sp.latex(_indexed(stmt.expr, kinds, chr(92) + 'mu'))}"
    if isinstance(stmt, Scalar):
        return f"{stmt.target} = {sp.latex(stmt.expr)}"
    if isinstance(stmt, Contract):
        return f"{stmt.target}_{{\\mu}} = \\sum_{{\\alpha}} K^x_{{\\mu\\alpha}} {stmt.source}_{{\\alpha}}"
    if isinstance(stmt, Total):
        return f"{stmt.target} = \\sum_{{\\alpha}} {stmt.source}_{{\\alpha}}"
    raise TypeError(stmt)


def block_latex(block: Block) -> str:
    lines = [statement_latex(s, block.kind) for s in block.statements]
    return "\\begin{aligned}\n" + " \\\\\n".join(f"& {line}" for line in lines) + "\n\\end{aligned}"
