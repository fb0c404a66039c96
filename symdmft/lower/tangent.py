"""Tangent (JVP) passes derived symbolically from a primal block (THEORY.md §3).

The propagator needs the sensitivity D of site averages to the order parameters, applied
as a Jacobian-vector product of the site process: perturb Delta by ``ddelta`` and carry
the perturbation ``dh, dw`` along. For every primal statement we emit the primal
statement followed by its tangent:

    target = expr(v1, v2, ...)    ->    dtarget = sum_v  d expr / d v * dv     (sympy.diff)
    Contract / Total (linear)     ->    the same contraction of the tangent source

so a new activation or layer needs no hand-written tangent code.
"""
from __future__ import annotations

import sympy as sp

from ..arch.activations import regularise
from .ir import Block, Contract, Pointwise, Scalar, Total, make_block

VARIABLE_KINDS = ("vec", "scalar", "data")


def tangent_name(name: str) -> str:
    return "d" + name


def _tangent_expr(expr: sp.Expr, kinds: dict) -> sp.Expr:
    terms = []
    for v in sorted(expr.free_symbols, key=lambda x: x.name):
        if kinds.get(v.name) in VARIABLE_KINDS:
            dv = sp.Symbol(tangent_name(v.name), real=True)
            terms.append(regularise(sp.diff(expr, v)) * dv)
    return sp.Add(*terms)


def tangent_statement(stmt):
    """The tangent of one statement (a statement of the same kind on tangent names)."""
    dt = tangent_name(stmt.target)
    if isinstance(stmt, (Contract, Total)):
        return type(stmt)(dt, tangent_name(stmt.source))
    raise TypeError(stmt)


def tangent_block(primal: Block, name: str | None = None) -> Block:
    """Primal statements interleaved with their symbolic tangents."""
    kinds = primal.kind
    statements, new_kinds = [], dict(kinds)
    for stmt in primal.statements:
        statements.append(stmt)
        if isinstance(stmt, Pointwise):
            statements.append(Pointwise(tangent_name(stmt.target),
                                        _tangent_expr(stmt.expr, kinds), stmt.over))
        elif isinstance(stmt, Scalar):
            statements.append(Scalar(tangent_name(stmt.target), _tangent_expr(stmt.expr, kinds)))
        else:
            statements.append(tangent_statement(stmt))
    for n, k in kinds.items():
        if k in VARIABLE_KINDS:
            new_kinds[tangent_name(n)] = k
    return make_block(name or "tangent_" + primal.name, statements, new_kinds)


def prune(block: Block, outputs) -> Block:
    """Drop statements whose targets no requested output depends on (dead code)."""
    needed, kept = set(outputs), []
    for stmt in reversed(block.statements):
        if stmt.target not in needed:
            continue
        kept.append(stmt)
        if isinstance(stmt, (Contract, Total)):
            needed.add(stmt.source)
        else:
            needed |= {v.name for v in stmt.expr.free_symbols}
    return make_block(block.name, reversed(kept), block.kind)


def activation_atoms(blocks, h_name: str = "h") -> dict:
    """Name every transcendental / piecewise function of h in ``blocks``: {atom: act<n>}."""
    h = sp.Symbol(h_name, real=True)
    atoms = set()
    for block in blocks:
        for stmt in block.statements:
            if isinstance(stmt, (Pointwise, Scalar)):
                atoms |= {a for a in stmt.expr.atoms(sp.Function, sp.Max, sp.Min)
                          if h in a.free_symbols}
    ordered = sorted(atoms, key=lambda a: (sp.count_ops(a), sp.sstr(a)))
    return {a: sp.Symbol(f"act{n}", real=True) for n, a in enumerate(ordered)}


def hoist_activation(block: Block, names: dict, compute: bool) -> Block:
    """Replace each function of h by its ``act<n>`` symbol (common subexpressions).

    ``tanh(h)`` appears in phi, phi', phi'' and in every tangent; evaluating it once per
    site and point instead of once per use is the difference between a solver bound by
    ``math.tanh`` calls and one bound by arithmetic. With ``compute`` the block evaluates
    the values it uses (for all points; statements over training points read the leading
    entries); without, they are inputs (the propagator reads them from the stored
    trajectory, so no direction re-evaluates them).
    """
    body, used = [], set()
    for stmt in block.statements:
        if isinstance(stmt, (Pointwise, Scalar)):
            expr = stmt.expr.xreplace(names)
            used |= {s.name for s in expr.free_symbols if s.name.startswith("act")}
            stmt = Pointwise(stmt.target, expr, stmt.over) if isinstance(stmt, Pointwise) \
                else Scalar(stmt.target, expr)
        body.append(stmt)
    hoisted = [Pointwise(s.name, a) for a, s in names.items() if s.name in used] if compute else []
    kinds = dict(block.kind, **{s.name: "vec" for s in names.values() if s.name in used})
    return make_block(block.name, hoisted + body, kinds)


def second_name(name: str) -> str:
    return "d2" + name


def _second_expr(expr: sp.Expr, kinds: dict) -> sp.Expr:
    """d2 e = sum_v de/dv d2v + sum_{v,w} d2e/dv dw dv dw  (data inputs are linear: d2delta = 0)."""
    variables = sorted((v for v in expr.free_symbols if kinds.get(v.name) in VARIABLE_KINDS),
                       key=lambda x: x.name)
    terms = []
    for v in variables:
        if kinds[v.name] != "data":
            terms.append(regularise(sp.diff(expr, v)) * sp.Symbol(second_name(v.name), real=True))
        for w in variables:
            second = regularise(sp.diff(expr, v, w))
            if second != 0:
                terms.append(second * sp.Symbol(tangent_name(v.name), real=True)
                             * sp.Symbol(tangent_name(w.name), real=True))
    return sp.Add(*terms)


def second_order_block(primal: Block, name: str | None = None) -> Block:
    """Primal, tangent and second-order tangent statements along one direction ddelta.

    Used for the O(1/N) mean correction (THEORY.md §3, bias), which needs second
    directional derivatives D2[v, v] of site averages with respect to Delta.
    """
    kinds = primal.kind
    first = tangent_block(primal)
    statements, new_kinds = [], dict(first.kind)
    for stmt in first.statements:
        statements.append(stmt)
        if stmt.target.startswith("d") and stmt.target[1:] in kinds:
            continue
        if isinstance(stmt, (Contract, Total)):
            statements.append(type(stmt)(second_name(stmt.target), second_name(stmt.source)))
        elif isinstance(stmt, Pointwise):
            statements.append(Pointwise(second_name(stmt.target), _second_expr(stmt.expr, kinds), stmt.over))
        else:
            statements.append(Scalar(second_name(stmt.target), _second_expr(stmt.expr, kinds)))
    for n, k in kinds.items():
        if k in ("vec", "scalar"):
            new_kinds[second_name(n)] = k
    return make_block(name or "second_" + primal.name, statements, new_kinds)
