"""The symbolic stages: action, saddle and Hessian blocks against a naive derivation.

The reference (tests/oracles/naive_two_layer_blocks.py) imports nothing from symdmft:
it builds h(k), w(k) by hand for the linear two-layer network (P = 1) and takes Gaussian
moments monomial by monomial. symdmft instead differentiates its action, whose site
process is unrolled from the same IR the solvers print. Both are exact polynomials, so
they must agree identically (``expand(a - b) == 0``), not just to a tolerance.
"""
import pytest
import sympy as sp

import symdmft as sd
from tests.oracles.naive_two_layer_blocks import naive_blocks


def _in_delta(expr, inst, naive):
    """Rewrite symdmft's f_0_k = y_0 - Delta_k in the naive symbols (matched by name)."""
    y0 = inst.symbols["y"][0]
    subs = {row[0]: y0 - naive["symbols"][f"Delta_{k}"]
            for k, row in enumerate(inst.symbols["f"]) if f"Delta_{k}" in naive["symbols"]}
    by_name = {s: naive["symbols"][s.name] for s in expr.free_symbols if s.name in naive["symbols"]}
    return sp.expand(expr.xreplace(by_name).xreplace(subs))


@pytest.fixture(scope="module")
def linear():
    return sd.derive(sd.mlp(activation="linear", gamma0=1.0))


@pytest.mark.parametrize("steps", [2, 3])
def test_blocks_equal_naive_derivation(linear, steps):
    """kappa, D and the saddle agree exactly with the hand derivation (D = -dpsi/dDelta)."""
    inst = linear.instance(P=1, steps=steps)
    naive = naive_blocks(steps)
    n = steps + 1
    for t in range(n):
        assert _in_delta(inst.saddle[t].rhs, inst, naive) == sp.expand(naive["mean"][t])
        for s in range(n):
            assert _in_delta(inst.kappa[t, s], inst, naive) == sp.expand(naive["kappa"][t, s])
            assert _in_delta(inst.D[t, s], inst, naive) == sp.expand(-naive["D_f"][t, s])


def test_structure_for_nonlinear_activation():
    """THEORY.md O9 at the symbolic level: kappa symmetric, I - D unit lower-triangular."""
    inst = sd.derive(sd.mlp(activation="tanh")).instance(P=2, steps=2, evaluate=False)
    n = inst.kappa.shape[0]
    assert inst.kappa == inst.kappa.T
    P = 2
    for a in range(n):
        for b in range(n):
            if b // P >= a // P:      # same or later time slice: no causal influence
                assert inst.D[a, b] == 0


def test_generic_blocks_and_latex(linear):
    """The generic saddle is q = <psi>, kappa a covariance, I - D = 1 - <dpsi/dq>."""
    (qa, qb) = linear.generic.saddle[0].lhs, linear.generic.saddle[1].lhs
    assert "E[" in str(linear.saddle[0].rhs)
    k = linear.hessian["kappa"]
    assert k[0, 1] == k[1, 0]
    assert linear.hessian["I_minus_D"][0, 0].has(sp.Derivative)
    tex = linear.latex()
    for piece in (r"\langle", r"\kappa", "I - D", r"\Sigma_q", r"\sum_{\alpha}"):
        assert piece in tex
    assert "tangent_step" in str(linear)
    assert qa != qb
