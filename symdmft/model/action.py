"""The DMFT action of a two-layer network, built in SymPy (THEORY.md §3).

    S[q, q^] = sum_a q^_a q_a + ln E_site[ exp(- sum_a q^_a psi_a) ]

Order parameters (prediction-only form): ``q = f_mu(k)`` for every point and step;
``psi_mu(k) = w(k) phi(h_mu(k)) / gamma0`` (minus its t = 0 value for centred networks).
The site is driven by ``Delta_a(k) = y_a - f_a(k)``, so psi depends on q through the
site process, which is unrolled here by running the very IR blocks the solvers print
(``symdmft.lower.interpret``). ``generic_action`` is the same construction for two
representative order parameters with opaque observables, which is what ``latex()`` shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..lower.interpret import run_block
from .expectation import Expectation, Source


@dataclass(frozen=True)
class Unrolled:
    """A small instance (P points, ``steps`` steps) with every field explicit."""
    q: tuple             # order parameters f_mu(k), ordered by time then point
    qhat: tuple          # their conjugates
    psi: tuple           # site observables aligned with q (functions of sources and q)
    sources: tuple       # (u_0, ..., u_{P-1}, w0)
    source_cov: sp.Matrix
    symbols: dict        # eta, gamma0, Kx (Matrix), y (list), f (list of lists by step)

    @property
    def action(self) -> sp.Expr:
        exponent = -sp.Add(*[a * b for a, b in zip(self.qhat, self.psi)])
        return sp.Add(*[a * b for a, b in zip(self.qhat, self.q)]) + sp.log(Expectation(sp.exp(exponent)))


def _kx_symbols(P: int) -> sp.Matrix:
    if P == 1:
        return sp.Matrix([[sp.Symbol("Kx", positive=True)]])
    return sp.Matrix(P, P, lambda i, j: sp.Symbol(f"Kx_{min(i, j)}{max(i, j)}", real=True))


def unroll(site, P: int = 1, steps: int = 2) -> Unrolled:
    """Unroll ``site`` (a ``TwoLayerSite``) on P training points for ``steps`` GD steps."""
    eta, gamma0 = sp.Symbol("eta", positive=True), sp.Symbol("gamma0", positive=True)
    kx = _kx_symbols(P)
    y = [sp.Symbol(f"y_{a}", real=True) for a in range(P)]
    f = [[sp.Symbol(f"f_{a}_{k}", real=True) for a in range(P)] for k in range(steps + 1)]
    u = [Source(f"u_{a}", real=True) for a in range(P)]
    w0 = Source("w0", real=True)
    kx_rows = kx.tolist()
    env = {"h": list(u), "w": w0, "eta": eta, "gamma0": gamma0}
    psi = []
    for k in range(steps + 1):
        run_block(site.features, env, kx_rows, P, P)
        psi.append(list(env["out"]))
        if k == steps:
            break
        env["delta"] = [y[a] - f[k][a] for a in range(P)]
        run_block(site.step, env, kx_rows, P, P)
        env["h"], env["w"] = env["h_next"], env["w_next"]
    if site.net.center:
        psi = [[p - p0 for p, p0 in zip(row, psi[0])] for row in psi]
    q = tuple(x for row in f for x in row)
    qhat = tuple(sp.Symbol(f"fhat_{a}_{k}", real=True) for k in range(steps + 1) for a in range(P))
    cov = sp.diag(kx, sp.Matrix([[1]]))
    symbols = {"eta": eta, "gamma0": gamma0, "Kx": kx, "y": y, "f": f}
    return Unrolled(q, qhat, tuple(x for row in psi for x in row), tuple(u) + (w0,), cov, symbols)


def generic_action():
    """S for two representative order parameters with opaque site observables psi_a(q)."""
    qa, qb = sp.symbols("q_a q_b", real=True)
    ha, hb = sp.symbols(r"\hat{q}_a \hat{q}_b", real=True)
    z = Source("z", real=True)
    psi_a = sp.Function(r"\psi_a")(qa, qb, z)
    psi_b = sp.Function(r"\psi_b")(qa, qb, z)
    S = ha * qa + hb * qb + sp.log(Expectation(sp.exp(-ha * psi_a - hb * psi_b)))
    return S, (qa, qb), (ha, hb)
