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


# ---- matrix programs (symdmft.expand.matrix_calculus) -----------------------------------

def _program_functions(program, inputs, outputs):
    """Compile the tangent and adjoint of a matrix program through ``render``."""
    import numpy as np
    from symdmft.expand.matrix_calculus import adjoint_program, render, tangent_program
    tangent = tangent_program(program, inputs)
    d_out = {sp.MatrixSymbol("d" + o.name, *o.shape) for o in outputs}
    adjoint = adjoint_program(tangent, d_out)
    scope = {"np": np, "_T": lambda Z: np.swapaxes(Z, -1, -2)}

    def run(lines, env):
        env = dict(scope, **env)
        for sym, expr in lines:
            env[sym.name] = eval(render(expr, set()), env)
        return env
    return run, tangent, adjoint


def test_matrix_program_tangent_and_adjoint():
    """A program with every rule (sum, product, transpose, Hadamard, inverse, scalar factor):
    the derived tangent equals central differences of the program (step 1e-6: 1e-8) and the
    derived adjoint is its transpose, <c, J d> = <J^T c, d> (rounding: 1e-12)."""
    import numpy as np
    n = sp.Symbol("n", integer=True, positive=True)
    a = sp.Symbol("a")
    A, B, P, Z = (sp.MatrixSymbol(s, n, n) for s in "ABPZ")
    program = [(P, sp.Inverse(sp.Identity(n) + a * sp.HadamardProduct(A, B))),
               (Z, P * A.T * P + 3 * B * A)]
    run, tangent, adjoint = _program_functions(program, (A, B), (Z,))
    rng = np.random.default_rng(0)
    m = 5
    vals = {"A": 0.3 * rng.normal(size=(m, m)), "B": 0.3 * rng.normal(size=(m, m)), "a": 0.7}

    def evaluate(v):
        Pv = np.linalg.inv(np.eye(m) + v["a"] * v["A"] * v["B"])
        return {**v, "P": Pv, "Z": Pv @ v["A"].T @ Pv + 3 * v["B"] @ v["A"]}
    base = evaluate(vals)
    dA, dB = rng.normal(size=(m, m)), rng.normal(size=(m, m))
    env = run(tangent, {**base, "dA": dA, "dB": dB})
    h = 1e-6
    plus = evaluate({**vals, "A": vals["A"] + h * dA, "B": vals["B"] + h * dB})["Z"]
    minus = evaluate({**vals, "A": vals["A"] - h * dA, "B": vals["B"] - h * dB})["Z"]
    np.testing.assert_allclose(env["dZ"], (plus - minus) / (2 * h), atol=1e-8)
    bZ = rng.normal(size=(m, m))
    back = run(adjoint, {**base, "bZ": bZ})
    lhs = np.sum(bZ * env["dZ"])
    rhs = np.sum(back["bA"] * dA) + np.sum(back["bB"] * dB)
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_isserlis_gives_the_kappa_congruence():
    """The deep linear propagator applies kappa as Cov(z^T Q z, z^T Q' z) = 2 tr(S Q S Q') for a
    Gaussian site z ~ N(0, S) (deep.linear_operator); the symbolic layer's Wick/Isserlis rule
    (expand.gaussian) gives exactly that for a generic symbolic 4 x 4 covariance."""
    from symdmft.expand.gaussian import gaussian_moment
    k = 4
    s = sp.symbols(f"s0:{k * (k + 1) // 2}")
    S = sp.zeros(k, k)
    it = iter(s)
    for i in range(k):
        for j in range(i, k):
            S[i, j] = S[j, i] = next(it)
    Q = sp.Matrix(k, k, lambda i, j: sp.Rational(i + 2 * j + 1, 3) + sp.Rational(j + 2 * i + 1, 3))
    Q2 = sp.Matrix(k, k, lambda i, j: (i - j) ** 2 + i + j)

    def moment(*idx):
        powers = [0] * k
        for i in idx:
            powers[i] += 1
        return gaussian_moment(tuple(powers), S)
    r = range(k)
    cov = sum(Q[a, b] * Q2[c, d] * (moment(a, b, c, d) - moment(a, b) * moment(c, d))
              for a in r for b in r for c in r for d in r)
    assert sp.expand(cov - 2 * (S * Q * S * Q2).trace()) == 0
