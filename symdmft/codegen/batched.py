"""Print a tangent block for a batch of directions at once (Numba backend).

The tangent statements are linear in the tangent variables (``dh``, ``dw``, ``ddelta``,
...) with coefficients that depend only on the primal site state. So for one site the
coefficients are computed once, by the ``coefficients`` part, and applied to every
propagator direction in the batch by the ``directions`` part, whose innermost loop runs
over directions ``j`` and is contiguous (SIMD-friendly):

    c0_dh[a] = 1 - act0[a]**2                      # once per site
    for a: for j: dphi[a, j] = c0_dh[a] * dh[a, j]   # every direction

Coefficients come from ``sympy.diff`` of each tangent expression with respect to each
tangent variable; linearity is checked, not assumed.
"""
from __future__ import annotations

import sympy as sp

from ..lower.ir import Block, Contract, Pointwise, Scalar, Total, target_range
from .printers import RANGE, NumbaPrinter


def tangent_symbols(block: Block) -> set:
    """Names of tangent variables: ``d<name>`` where ``<name>`` is also in the block."""
    kinds = block.kind
    return {n for n in kinds if n.startswith("d") and n[1:] in kinds
            and kinds[n] in ("vec", "scalar", "data")}


class BatchedTangentPrinter:
    def __init__(self, block: Block, prefix: str):
        self.block = block
        self.prefix = prefix
        self.tangent = tangent_symbols(block)
        self.scalar = NumbaPrinter()
        self.coef_arrays: list = []       # (name, size) per-point coefficient scratch
        self.dir_arrays: list = []        # (name, size) per-direction temporaries
        self.coef_lines: list = []
        self.dir_lines: list = []
        for n, stmt in enumerate(block.statements):
            if stmt.target in self.tangent:
                self._tangent(n, stmt)
            else:
                self.coef_lines += getattr(self.scalar, "_print_" + type(stmt).__name__)(stmt, block, "")
                if block.kind.get(stmt.target) == "vec":
                    self.coef_arrays.append((stmt.target, RANGE[target_range(stmt)]))

    def _access(self, name: str, index: str | None) -> str:
        kind = self.block.kind[name]
        if kind in ("vec", "data"):
            return f"{name}[{index}, j]"
        return f"{name}[j]"

    def _tangent(self, n: int, stmt):
        if isinstance(stmt, (Pointwise, Scalar)):
            index = "a" if isinstance(stmt, Pointwise) else None
            variables = sorted((s for s in stmt.expr.free_symbols if s.name in self.tangent),
                               key=lambda s: s.name)
            coefs = {v: sp.diff(stmt.expr, v) for v in variables}
            rest = sp.expand(stmt.expr - sum(c * v for v, c in coefs.items()))
            if rest != 0 or any(c.free_symbols & set(variables) for c in coefs.values()):
                raise ValueError(f"tangent statement {stmt!r} is not linear in the tangents")
            terms = []
            for v, c in coefs.items():
                if c == 1:
                    terms.append(self._access(v.name, index))
                    continue
                cname = f"{self.prefix}{n}_{v.name}"
                if index:
                    self.coef_arrays.append((cname, RANGE[stmt.over]))
                    self.coef_lines += [f"for a in range({RANGE[stmt.over]}):",
                                        f"    {cname}[a] = {self.scalar.expr(c, self.block, 'a')}"]
                    terms.append(f"{cname}[a] * {self._access(v.name, 'a')}")
                else:
                    self.coef_lines.append(f"{cname} = {self.scalar.expr(c, self.block, None)}")
                    terms.append(f"{cname} * {self._access(v.name, None)}")
            rhs = " + ".join(terms) or "0.0"
            if index:
                self.dir_arrays.append((stmt.target, RANGE[stmt.over]))
                self.dir_lines += [f"for a in range({RANGE[stmt.over]}):",
                                   "    for j in range(n_active):",
                                   f"        {stmt.target}[a, j] = {rhs}"]
            else:
                self.dir_arrays.append((stmt.target, None))
                self.dir_lines += ["for j in range(n_active):", f"    {stmt.target}[j] = {rhs}"]
        elif isinstance(stmt, Contract):
            self.dir_arrays.append((stmt.target, "n_point"))
            self.dir_lines += ["for mu in range(n_point):",
                               "    for j in range(n_active):",
                               f"        {stmt.target}[mu, j] = 0.0",
                               "    for a in range(n_train):",
                               "        kxa = kx[mu, a]",
                               "        for j in range(n_active):",
                               f"            {stmt.target}[mu, j] += kxa * {stmt.source}[a, j]"]
        elif isinstance(stmt, Total):
            self.dir_arrays.append((stmt.target, None))
            self.dir_lines += ["for j in range(n_active):", f"    {stmt.target}[j] = 0.0",
                               "for a in range(n_train):", "    for j in range(n_active):",
                               f"        {stmt.target}[j] += {stmt.source}[a, j]"]
        else:
            raise TypeError(stmt)

    @staticmethod
    def _indent(lines, indent):
        return "\n".join(" " * indent + line for line in lines)

    def coefficients(self, indent: int) -> str:
        return self._indent([f"# {self.block.name}: coefficients (once per site)"] + self.coef_lines, indent)

    def directions(self, indent: int) -> str:
        return self._indent([f"# {self.block.name}: every direction of the batch"] + self.dir_lines, indent)

    def scratch(self, indent: int) -> str:
        """Allocate every temporary once per call."""
        lines = [f"{name} = np.empty({size})" for name, size in self.coef_arrays]
        lines += [f"{name} = np.empty(({size}, batch))" if size else f"{name} = np.empty(batch)"
                  for name, size in self.dir_arrays]
        return self._indent(lines or ["pass"], indent)
