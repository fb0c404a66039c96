"""Printers from IR statements to Python source (ARCHITECTURE.md habit 4).

Two printers share one interface, ``body(block, indent)``, and differ only in where the
site loop lives:

* ``NumbaPrinter`` prints the statements for ONE site inside an explicit site loop: vec
  symbols are 1-D arrays indexed by the point loop variable, scalars are locals;
  expressions use ``math`` so Numba compiles them to scalar code.
* ``NumPyPrinter`` prints the statements for ALL sites at once: vec symbols are (M, n)
  arrays, scalars (M,) arrays broadcast with ``[:, None]``; expressions use NumPy/SciPy
  ufuncs. It is the slow, obviously-correct reference backend.

Expression printing is SymPy's (``PythonCodePrinter`` / ``SciPyPrinter``) with symbol
names mapped to array accesses.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.numpy import SciPyPrinter
from sympy.printing.pycode import PythonCodePrinter

from ..lower.ir import TRAIN, Block, Contract, Pointwise, Scalar, Total

RANGE = {"point": "n_point", "train": "n_train"}


class _NamedSymbols:
    """Print symbols through ``self.names`` (set per statement) and Max/Min as nested
    two-argument calls of ``self.max_fn`` / ``self.min_fn``."""
    max_fn, min_fn = "max", "min"

    def _print_Symbol(self, expr):
        return self.names.get(expr.name, expr.name)

    def _nested(self, fn, expr):
        args = [self._print(a) for a in expr.args]
        out = args[0]
        for a in args[1:]:
            out = f"{fn}({out}, {a})"
        return out

    def _print_Max(self, expr):
        return self._nested(self.max_fn, expr)

    def _print_Min(self, expr):
        return self._nested(self.min_fn, expr)


class _ScalarExprPrinter(_NamedSymbols, PythonCodePrinter):
    """math-module scalar code."""


class _ArrayExprPrinter(_NamedSymbols, SciPyPrinter):
    """NumPy/SciPy ufunc code; Piecewise as numpy.where so shapes are kept."""
    max_fn, min_fn = "numpy.maximum", "numpy.minimum"

    def _print_Piecewise(self, expr):
        out = self._print(expr.args[-1].expr)     # the final (otherwise) branch is the default
        for e, c in reversed(expr.args[:-1]):
            out = f"numpy.where({self._print(c)}, {self._print(e)}, {out})"
        return out


class _BlockPrinter:
    """``body(block, indent)``: one ``_print_<Statement>`` per IR node (habit 4)."""

    def body(self, block: Block, indent: int) -> str:
        pad = " " * indent
        lines = [f"{pad}# {block.name}"]
        for s in block.statements:
            lines += getattr(self, "_print_" + type(s).__name__)(s, block, pad)
        return "\n".join(lines)


class NumbaPrinter(_BlockPrinter):
    """Statements for one site ``i`` (inside a site loop), scalar ``math`` code.

    Each printer owns its expression printer (whose symbol map changes per statement),
    so printers in different threads never share state.
    """

    def __init__(self):
        self.expr_printer = _ScalarExprPrinter({"fully_qualified_modules": True, "standard": "python3"})

    def names(self, block: Block, index: str | None) -> dict:
        out = {}
        for n, k in block.kind.items():
            out[n] = f"{n}[{index}]" if (k in ("vec", "data") and index) else n
        return out

    def expr(self, e: sp.Expr, block: Block, index: str | None) -> str:
        self.expr_printer.names = self.names(block, index)
        return self.expr_printer.doprint(e)

    def _print_Pointwise(self, s: Pointwise, block, pad):
        return [f"{pad}for a in range({RANGE[s.over]}):",
                f"{pad}    {s.target}[a] = {self.expr(s.expr, block, 'a')}"]

    def _print_Scalar(self, s: Scalar, block, pad):
        return [f"{pad}{s.target} = {self.expr(s.expr, block, None)}"]

    def _print_Contract(self, s: Contract, block, pad):
        return [f"{pad}for mu in range(n_point):",
                f"{pad}    acc = 0.0",
                f"{pad}    for a in range(n_train):",
                f"{pad}        acc += kx[mu, a] * {s.source}[a]",
                f"{pad}    {s.target}[mu] = acc"]

    def _print_Total(self, s: Total, block, pad):
        return [f"{pad}{s.target} = 0.0",
                f"{pad}for a in range(n_train):",
                f"{pad}    {s.target} += {s.source}[a]"]



class NumPyPrinter(_BlockPrinter):
    """Statements for all sites at once (vectorised over the leading site axis)."""

    def __init__(self):
        self.expr_printer = _ArrayExprPrinter({"fully_qualified_modules": True})

    def names(self, block: Block, over: str | None) -> dict:
        out = {}
        for n, k in block.kind.items():
            if k == "vec":
                out[n] = f"{n}[:, :n_train]" if over == TRAIN else n
            elif k == "scalar":
                out[n] = f"{n}[:, None]" if over else n
            else:
                out[n] = n
        return out

    def expr(self, e: sp.Expr, block: Block, over: str | None) -> str:
        self.expr_printer.names = self.names(block, over)
        code = self.expr_printer.doprint(e)
        if over and not any(block.kind.get(v.name) == "vec" for v in e.free_symbols):
            code = f"numpy.broadcast_to({code}, (n_site, {RANGE[over]})).copy()"
        return code

    def _print_Pointwise(self, s: Pointwise, block, pad):
        return [f"{pad}{s.target} = {self.expr(s.expr, block, s.over)}"]

    def _print_Scalar(self, s: Scalar, block, pad):
        return [f"{pad}{s.target} = {self.expr(s.expr, block, None)}"]

    def _print_Contract(self, s: Contract, block, pad):
        return [f"{pad}{s.target} = {s.source} @ kx.T"]

    def _print_Total(self, s: Total, block, pad):
        return [f"{pad}{s.target} = {s.source}.sum(axis=1)"]

