"""Frozen-dataclass IR of one site update (ARCHITECTURE.md, lower/).

A *site* is one neuron of the single-site process (THEORY.md §2). Its state lives in
named per-site arrays; every statement below runs for every site and reads symbols by
name. Each symbol has one of four kinds, which tells a printer how to index it:

    ``vec``    per site and per data point: ``x[i, a]``
    ``scalar`` per site: ``x[i]``
    ``data``   shared by all sites, per training point: ``x[a]``
    ``const``  a plain number (``eta``, ``gamma0``)

Data-index loops are implicit: a ``Pointwise`` statement holds for every point ``a`` of
its range, with ``vec`` and ``data`` symbols read at ``a``. The only couplings between
points are the two linear contractions ``Contract`` (with the input Gram matrix) and
``Total`` (a sum over training points). Because those are linear, tangents pass through
them unchanged; only pointwise expressions need ``sympy.diff`` (see ``tangent.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

POINT, TRAIN = "point", "train"   # ranges: all points (train then test) / training points


@dataclass(frozen=True)
class Pointwise:
    """``target[a] = expr`` for every point a in ``over`` (per site)."""
    target: str
    expr: sp.Expr
    over: str = POINT

    def __repr__(self):
        return f"{self.target}[a in {self.over}] = {sp.sstr(self.expr)}"


@dataclass(frozen=True)
class Scalar:
    """``target = expr`` (one number per site)."""
    target: str
    expr: sp.Expr

    def __repr__(self):
        return f"{self.target} = {sp.sstr(self.expr)}"


@dataclass(frozen=True)
class Contract:
    """``target[mu] = sum_{a in train} Kx[mu, a] source[a]`` for every point mu."""
    target: str
    source: str

    def __repr__(self):
        return f"{self.target}[mu] = sum_a Kx[mu, a] {self.source}[a]"


@dataclass(frozen=True)
class Total:
    """``target = sum_{a in train} source[a]``."""
    target: str
    source: str

    def __repr__(self):
        return f"{self.target} = sum_a {self.source}[a]"


Statement = Pointwise | Scalar | Contract | Total


@dataclass(frozen=True)
class Block:
    """A straight-line list of statements with the kind of every symbol it touches."""
    name: str
    statements: tuple
    kinds: tuple          # ((symbol name, kind), ...), sorted: hashable and deterministic

    @property
    def kind(self) -> dict:
        return dict(self.kinds)

    def __repr__(self):
        body = "\n".join(f"    {s!r}" for s in self.statements)
        return f"Block {self.name}:\n{body}"


def make_block(name: str, statements, kinds: dict) -> Block:
    return Block(name, tuple(statements), tuple(sorted(kinds.items())))


def target_range(stmt) -> str:
    """The data-index range a statement writes: its own for Pointwise, all points for Contract."""
    return POINT if isinstance(stmt, Contract) else getattr(stmt, "over", POINT)


def vector_temporaries(block: Block, bound=()) -> list[tuple[str, str]]:
    """(name, range) of every per-point target of ``block`` not in ``bound``, in order, once."""
    out = []
    for stmt in block.statements:
        if block.kind.get(stmt.target) == "vec" and stmt.target not in bound \
                and stmt.target not in (n for n, _ in out):
            out.append((stmt.target, target_range(stmt)))
    return out


def targets(block: Block) -> list[str]:
    return [s.target for s in block.statements]
