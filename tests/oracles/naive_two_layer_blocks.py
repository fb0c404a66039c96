"""Naive SymPy reference for the finite-width blocks of the two-layer LINEAR network, P = 1.

Independent of symdmft: imports only numpy and sympy. Deliberately explicit and short.

Prediction-only form of THEORY.md section 3: order parameters q = (f(0), ..., f(T)); the site
observable is ``psi(k) = w(k) h(k) / gamma0``; the site is driven by the error signals
``Delta_0, ..., Delta_{T-1}`` (free symbols), phi(h) = h, so per site (THEORY.md section 2)

    h(k+1) = h(k) + eta gamma0 w(k) Kx Delta_k,     w(k+1) = w(k) + eta gamma0 Delta_k h(k)
    h(0) = u ~ N(0, Kx),  w(0) = w0 ~ N(0, 1)  independent.

h(k), w(k) are linear in (u, w0); expectations of polynomials in (u, w0) are taken by replacing
each monomial u^a w0^b by E[u^a] E[w0^b], ``E u^(2n) = Kx^n (2n-1)!!``, odd moments 0.

Blocks (all sympy):
    mean[t]     = <psi(t)>
    kappa[t, s] = Cov(psi(t), psi(s))
    D_f[t, s]   = d<psi(t)>/dDelta_s   (zero for s >= t; column T is zero: there is no Delta_T)
and ``N Cov(f) -> (I + D_f)^{-1} kappa (I + D_f)^{-T}`` (plus sign: dDelta = -df).

Symbols: ``eta``, ``gamma0``, ``Kx`` positive; ``u``, ``w0`` real; ``Delta_k`` plain
``sympy.Symbol('Delta_k')`` (no assumptions). Always take them from the returned ``symbols``
dict, or substitute by name with ``subs_by_name`` (sympy treats equal names with different
assumptions as different symbols).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp

__all__ = ["naive_blocks", "naive_prediction_cov", "naive_saddle_deltas", "subs_by_name",
           "gaussian_expectation"]


def _moment(var_power, n):
    """E[x^n] for x ~ N(0, var_power): var^(n/2) (n-1)!! for even n, 0 for odd n."""
    if n % 2:
        return sp.Integer(0)
    return var_power ** (n // 2) * sp.factorial2(n - 1)


def gaussian_expectation(expr, u, w0, Kx):
    """E[expr] for expr polynomial in independent u ~ N(0, Kx), w0 ~ N(0, 1)."""
    poly = sp.Poly(sp.expand(expr), u, w0)
    total = sp.Integer(0)
    for (a, b), coeff in poly.terms():
        total += coeff * _moment(Kx, a) * _moment(sp.Integer(1), b)
    return sp.expand(total)


@lru_cache(maxsize=None)
def naive_blocks(T):
    """Symbolic blocks for T GD steps (times 0..T).

    Returns ``dict(kappa=Matrix(T+1, T+1), D_f=Matrix(T+1, T+1), mean=Matrix(T+1, 1),
    symbols={name: Symbol})``; ``symbols`` holds ``eta``, ``gamma0``, ``Kx``, ``u``, ``w0``,
    ``Delta_0`` ... ``Delta_{T-1}``. Result is cached per T (treat it as read-only).
    """
    eta, gamma0, Kx = sp.symbols("eta gamma0 Kx", positive=True)
    u, w0 = sp.symbols("u w0", real=True)
    Delta = [sp.Symbol(f"Delta_{k}") for k in range(T)]

    # Site process, written out step by step.
    h = [u]
    w = [w0]
    for k in range(T):
        h.append(sp.expand(h[k] + eta * gamma0 * w[k] * Kx * Delta[k]))
        w.append(sp.expand(w[k] + eta * gamma0 * Delta[k] * h[k]))
    psi = [w[k] * h[k] / gamma0 for k in range(T + 1)]

    def E(expr):
        return gaussian_expectation(expr, u, w0, Kx)

    mean = sp.Matrix([E(psi[t]) for t in range(T + 1)])
    kappa = sp.zeros(T + 1, T + 1)
    for t in range(T + 1):
        for s in range(t, T + 1):
            c = sp.expand(E(psi[t] * psi[s]) - mean[t] * mean[s])
            kappa[t, s] = c
            kappa[s, t] = c
    D_f = sp.zeros(T + 1, T + 1)
    for t in range(T + 1):
        for s in range(T):          # column T stays zero: no Delta_T
            D_f[t, s] = sp.expand(sp.diff(mean[t], Delta[s]))

    symbols = {"eta": eta, "gamma0": gamma0, "Kx": Kx, "u": u, "w0": w0}
    symbols.update({f"Delta_{k}": Delta[k] for k in range(T)})
    return dict(kappa=kappa, D_f=D_f, mean=mean, symbols=symbols)


def subs_by_name(expr, values):
    """Substitute numbers into ``expr`` matching free symbols by NAME (assumptions ignored)."""
    expr = sp.sympify(expr)
    rep = {s: values[s.name] for s in expr.free_symbols if s.name in values}
    return expr.xreplace(rep)


def _to_numpy(M, values):
    return np.array(M.applyfunc(lambda e: subs_by_name(e, values)).evalf(), dtype=float)


def naive_saddle_deltas(T, values):
    """Infinite-width (saddle) error signals ``[Delta_0, ..., Delta_T]`` as a numpy array.

    ``values``: dict with ``eta``, ``gamma0``, ``Kx``, ``y``. Forward substitution
    ``Delta_k = y - <psi(k)>(Delta_0..Delta_{k-1})`` (causal).
    """
    mean = naive_blocks(T)["mean"]
    vals = {k: float(v) for k, v in values.items()}
    out = []
    for k in range(T + 1):
        d = vals["y"] - float(subs_by_name(mean[k], vals))
        out.append(d)
        vals[f"Delta_{k}"] = d
    return np.array(out)


def naive_prediction_cov(T, values):
    """Numeric ``N Cov(f) = (I + D_f)^{-1} kappa (I + D_f)^{-T}``, shape (T+1, T+1).

    ``values``: dict name -> float with ``eta``, ``gamma0``, ``Kx`` and ``Delta_0`` ...
    ``Delta_{T-1}``. If the Delta's are missing but ``y`` is given, the saddle-point Delta path
    (``naive_saddle_deltas``) is used. Entry [t, s] is ``N Cov(f(t), f(s))`` at steps t, s.
    """
    vals = {k: float(v) for k, v in values.items()}
    if any(f"Delta_{k}" not in vals for k in range(T)):
        if "y" not in vals:
            raise KeyError("give Delta_0..Delta_{T-1} or y")
        d = naive_saddle_deltas(T, vals)
        vals.update({f"Delta_{k}": d[k] for k in range(T)})
    blocks = naive_blocks(T)
    kappa = _to_numpy(blocks["kappa"], vals)
    D_f = _to_numpy(blocks["D_f"], vals)
    M = np.linalg.inv(np.eye(T + 1) + D_f)
    return M @ kappa @ M.T
