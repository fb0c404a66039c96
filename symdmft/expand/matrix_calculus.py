"""Tangents and adjoints of matrix programs, derived symbolically (THEORY.md §2-3).

A matrix program is a list of assignments ``(name, expr)``: SymPy matrix expressions in
MatrixSymbols (sums, products, transposes, Hadamard products, scalar factors, and
``Inverse`` as a whole right-hand side), each name usable by the later ones. The deep linear
layer map of THEORY.md §2 is one (``symdmft.deep.linear_program``).

* ``tangent_program``: the forward-mode derivative, one assignment per name,
  ``d(A B) = dA B + A dB``, ``d(A^T) = dA^T``, ``d(A o B) = dA o B + A o dB`` and, for
  ``M = Inverse(Z)``, ``dM = -M dZ M``; every right-hand side expanded into terms with
  exactly one tangent factor.
* ``adjoint_program``: its transpose, assignments in reverse: a term ``c P dZ Q`` of ``dY``
  gives ``c P^T bY Q^T`` to ``bZ``, ``c P dZ^T Q`` gives ``c Q bY^T P``, ``c P (W o dZ) Q``
  gives ``c W o (P^T bY Q^T)``.
* ``render``: a NumPy expression batched over a leading axis (``@``, ``_T`` = swap of the
  last two axes, ``*`` for Hadamard), runs of unbatched factors multiplied first.
"""
from __future__ import annotations

import sympy as sp
from sympy import HadamardProduct, Identity, Inverse, MatAdd, MatMul, MatrixSymbol, Transpose, ZeroMatrix


def _d(sym: MatrixSymbol, prefix: str) -> MatrixSymbol:
    return MatrixSymbol(prefix + sym.name, *sym.shape)


def _tangent(expr, tangents: dict):
    """d(expr) given the tangent symbol of every symbol that has one; None if zero."""
    if isinstance(expr, MatrixSymbol):
        return tangents.get(expr)
    if isinstance(expr, (Identity, ZeroMatrix)) or not isinstance(expr, sp.MatrixExpr):
        return None
    if isinstance(expr, MatAdd):
        parts = [t for t in (_tangent(a, tangents) for a in expr.args) if t is not None]
        return MatAdd(*parts) if parts else None
    if isinstance(expr, MatMul):
        coeff = sp.Mul(*[a for a in expr.args if not isinstance(a, sp.MatrixExpr)])
        mats = [a for a in expr.args if isinstance(a, sp.MatrixExpr)]
        parts = []
        for i, m in enumerate(mats):
            t = _tangent(m, tangents)
            if t is not None:
                parts.append(coeff * MatMul(*mats[:i], t, *mats[i + 1:]))
        return MatAdd(*parts) if parts else None
    if isinstance(expr, Transpose):
        t = _tangent(expr.arg, tangents)
        return None if t is None else Transpose(t)
    if isinstance(expr, HadamardProduct):
        a, b = expr.args if len(expr.args) == 2 else (expr.args[0], HadamardProduct(*expr.args[1:]))
        ta, tb = _tangent(a, tangents), _tangent(b, tangents)
        parts = [HadamardProduct(x, y) for x, y in ((ta, b), (a, tb)) if None not in (x, y)]
        return MatAdd(*parts) if parts else None
    raise TypeError(f"no tangent rule for {type(expr).__name__}: {expr}")


def _terms(expr) -> list:
    """An expanded linear expression as a list of its terms."""
    expr = sp.expand(expr.doit())
    return list(expr.args) if isinstance(expr, MatAdd) else [expr]


def tangent_program(program, inputs, prefix: str = "d") -> list:
    """[(dname, expr)] for every assignment, linear in the tangents of ``inputs`` (symbols)."""
    tangents = {s: _d(s, prefix) for s in inputs}
    out = []
    for name, expr in program:
        if isinstance(expr, Inverse):                      # M = Z^{-1}: dM = -M dZ M
            dz = _tangent(expr.arg, tangents)
            t = None if dz is None else -name * dz * name
        else:
            t = _tangent(expr, tangents)
        if t is None:
            continue
        tangents[name] = _d(name, prefix)
        out.append((tangents[name], MatAdd(*_terms(t))))
    return out


def _split(term, tangent_names: set):
    """term = coeff * left * core * right with one tangent symbol in core -> the pieces."""
    if not isinstance(term, MatMul):
        term = MatMul(sp.S.One, term, evaluate=False)
    coeff = sp.Mul(*[a for a in term.args if not isinstance(a, sp.MatrixExpr)])
    mats = [a for a in term.args if isinstance(a, sp.MatrixExpr)]
    for i, m in enumerate(mats):
        if m.atoms(MatrixSymbol) & tangent_names:
            return coeff, mats[:i], m, mats[i + 1:]
    raise ValueError(f"term without a tangent factor: {term}")


def adjoint_program(tangent, outputs, prefix: str = "d", bar: str = "b") -> list:
    """[(bname, expr)]: cotangents of every tangent symbol (inputs included) from those of
    ``outputs`` (the symbols whose tangents the program returns), in reverse order. Tangent
    symbols are the ones named ``prefix + name`` (so no program symbol may start with it)."""
    tangent_syms = {t for t, _ in tangent} | {a for _, e in tangent for a in e.atoms(MatrixSymbol)
                                              if a.name.startswith(prefix)}
    contrib: dict = {}
    barsym = lambda t: MatrixSymbol(bar + t.name[len(prefix):], *t.shape)  # noqa: E731
    out = []
    defined = {t for t, _ in tangent}
    for t, expr in reversed(tangent):
        if t not in outputs:
            parts = contrib.get(t, [])
            if not parts:
                continue
            out.append((barsym(t), MatAdd(*parts)))
        bY = barsym(t)
        for term in _terms(expr):
            coeff, left, core, right = _split(term, tangent_syms)
            L = MatMul(*left).T if left else None
            R = MatMul(*right).T if right else None
            inner = lambda Z: MatMul(*[x for x in (L, Z, R) if x is not None])  # noqa: E731
            if isinstance(core, MatrixSymbol):
                z, piece = core, inner(bY)
            elif isinstance(core, Transpose):
                z, piece = core.arg, Transpose(inner(bY))
            elif isinstance(core, HadamardProduct):
                base = [a for a in core.args if a not in tangent_syms]
                (z,) = [a for a in core.args if a in tangent_syms]
                piece = HadamardProduct(*base, inner(bY))
            else:
                raise ValueError(f"no adjoint rule for the factor {core}")
            contrib.setdefault(z, []).append(coeff * piece)
    for z in sorted(tangent_syms - defined, key=lambda s: s.name):      # the inputs' cotangents
        if z in contrib:
            out.append((barsym(z), MatAdd(*contrib[z])))
    return [(b, MatAdd(*_terms(e))) for b, e in out]


def render(expr, batched: set) -> str:
    """NumPy source of an expression; symbols in ``batched`` carry a leading axis of directions."""
    if isinstance(expr, MatrixSymbol):
        return expr.name
    if isinstance(expr, Identity):
        return f"np.eye({sp.pycode(expr.shape[0])})"
    if isinstance(expr, Inverse):
        return f"np.linalg.inv({render(expr.arg, batched)})"
    if isinstance(expr, MatAdd):
        return " + ".join(render(a, batched) for a in expr.args)
    if isinstance(expr, Transpose):
        return f"_T({render(expr.arg, batched)})"
    if isinstance(expr, HadamardProduct):
        return " * ".join(f"({render(a, batched)})" if isinstance(a, (MatAdd, MatMul)) else render(a, batched)
                          for a in expr.args)
    if isinstance(expr, MatMul):
        coeff = sp.Mul(*[a for a in expr.args if not isinstance(a, sp.MatrixExpr)])
        mats = [a for a in expr.args if isinstance(a, sp.MatrixExpr)]
        groups, run = [], []
        for m in mats:                                    # unbatched runs first: n^3, not K n^3
            if m.atoms(MatrixSymbol) & batched:
                if run:
                    groups.append(run)
                    run = []
                groups.append([m])
            else:
                run.append(m)
        if run:
            groups.append(run)
        def factor(m):
            text = render(m, batched)
            return f"({text})" if isinstance(m, (MatAdd, HadamardProduct)) else text

        def one(g):
            s = " @ ".join(factor(m) for m in g)
            return f"({s})" if len(g) > 1 and len(groups) > 1 else s
        body = " @ ".join(one(g) for g in groups)
        if coeff == 1:
            return body
        if coeff == -1:
            return f"-({body})"
        return f"({sp.pycode(coeff)}) * ({body})"
    raise TypeError(f"cannot render {type(expr).__name__}: {expr}")
