"""Run IR blocks on SymPy values: the site process unrolled symbolically.

The same statements the printers turn into Numba/NumPy code are evaluated here with
SymPy expressions as values, so the symbolic action (``symdmft.model.action``) is built
from exactly the rule the solvers run. ``env`` maps names to a list (vec: one entry per
point; data: one per training point) or a single expression (scalar, const).
"""
from __future__ import annotations

import sympy as sp

from .ir import TRAIN, Block, Contract, Pointwise, Scalar, Total


def _bind(expr: sp.Expr, block: Block, env: dict, a: int | None) -> sp.Expr:
    subs = {}
    for sym in expr.free_symbols:
        value = env.get(sym.name)
        if value is None:
            continue
        subs[sym] = value[a] if isinstance(value, list) else value
    return expr.xreplace(subs)


def run_block(block: Block, env: dict, kx, n_point: int, n_train: int) -> dict:
    """Execute ``block`` on ``env`` (updated in place and returned); ``kx`` is (n_point, n_train)."""
    for stmt in block.statements:
        if isinstance(stmt, Pointwise):
            n = n_train if stmt.over == TRAIN else n_point
            env[stmt.target] = [_bind(stmt.expr, block, env, a) for a in range(n)]
        elif isinstance(stmt, Scalar):
            env[stmt.target] = _bind(stmt.expr, block, env, None)
        elif isinstance(stmt, Contract):
            src = env[stmt.source]
            env[stmt.target] = [sp.Add(*[kx[mu][a] * src[a] for a in range(n_train)])
                                for mu in range(n_point)]
        elif isinstance(stmt, Total):
            env[stmt.target] = sp.Add(*env[stmt.source][:n_train])
        else:
            raise TypeError(stmt)
    return env
