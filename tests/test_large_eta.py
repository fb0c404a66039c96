"""Discrete GD at large learning rate (issue 6, part 1): sharpness, edge of stability, divergence.

THEORY.md §1: one GD step moves the error by ``Delta -> (I - eta K) Delta`` to first order, so
training is linearly stable while the sharpness ``lambda_max(K) < 2/eta``. The solver steps
discrete GD exactly (§2), so nothing here is an O(eta) approximation: large eta is the same
code path as small eta, and these tests check that regime against exact and simulated truths.

* Exact finite-eta map (linear two-layer net, one input): per neuron
  ``(h/sqrt(Kx), w) -> [[1, c], [c, 1]] (h/sqrt(Kx), w)``, ``c = eta gamma0 sqrt(Kx) Delta(k)``,
  hence the kernel imbalance ``Phi1/Kx - G1 = mean(ht^2 - w^2)`` is multiplied by exactly
  ``1 - c^2`` per step, at ANY width (``ht'^2 - w'^2 = (1 - c^2)(ht^2 - w^2)``).
* Tanh two-layer net on the default data with targets x3, gamma0 = 2: gradient flow sharpens
  to lambda_max ~ 4.6; at eta = 0.7 (2/eta = 2.857) the sharpness rises to the edge and hovers
  there (edge of stability); at eta = 0.9 it overshoots to ~4.3 and settles at ~1.98 < 2/eta
  (catapult).
"""
import re
from functools import lru_cache

import numpy as np
import pytest

import symdmft as sd
from symdmft.observables.compare import variance_with_error
from symdmft.observables.sharpness import sharpness, stability_report

try:  # tests/ on sys.path (pytest rootdir insertion) or run from the repo root
    from oracles import two_layer_linear_exact as exact
except ImportError:  # pragma: no cover
    from tests.oracles import two_layer_linear_exact as exact


# ------------------------------------------------------------------ sharpness helpers
def test_sharpness_shapes_and_report():
    """lambda_max on (T, P, P) and (E, T, P, P) equals numpy's eigvalsh; report fields."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 7, 3, 3))
    K = A @ np.swapaxes(A, -1, -2)
    want = np.linalg.eigvalsh(K)[..., -1]
    np.testing.assert_allclose(sharpness(K), want, rtol=1e-13)
    np.testing.assert_allclose(sharpness(K[0]), want[0], rtol=1e-13)
    rep = stability_report(np.array([1.0, 1.9, 2.0, 1.96, 1.5]), eta=1.0)
    assert rep.threshold == 2.0 and rep.first_unstable_step == 2
    assert rep.fraction_near_edge == pytest.approx(3 / 5) and rep.max_sharpness == 2.0
    assert stability_report(np.array([1.0, 1.2]), eta=1.0).first_unstable_step is None
    with pytest.raises(ValueError):
        sharpness(np.ones((3, 2)))


# ------------------------------------------------ exact finite-eta map (linear, P = 1)
# (Kx, gamma0, y, eta): eta * max_t K(t) = 2.34 and 2.80 at infinite width: both runs pass
# ABOVE 2/eta for a few steps (a catapult of the linear net) and then converge.
LINEAR_CASES = [(1.0, 1.0, 1.0, 0.75), (0.6, 0.8, -1.2, 1.25)]
LINEAR_STEPS = 30


def linear_problem(Kx, gamma0, y):
    net = sd.mlp(hidden_layers=1, activation="linear", gamma0=gamma0)
    return net, sd.Data(np.array([[np.sqrt(Kx)]]), np.array([y]))


@pytest.mark.parametrize("Kx,gamma0,y,eta", LINEAR_CASES)
def test_exact_imbalance_map_at_finite_width(Kx, gamma0, y, eta):
    """Per network at N = 64: I(k+1) = (1 - c_k^2) I(k), I = Phi1/Kx - G1, c_k = eta gamma0
    sqrt(Kx) (y - f_k), with each network's own f_k.

    The identity is exact for every N (module docstring), so the only error is float64
    rounding in the N-term kernel sums (~1e-16 relative to Phi1, G1 ~ 1; measured 1e-13
    relative to I). Tolerance 1e-8 relative to max(|I(k)|, |I(k+1)|): I stays >= ~1e-3 here
    (|1 - c^2| >= 0.07 at every step), so rounding is far below it and any O(eta^2) slip in
    the simulated update (a missing c^2 term is a ~50% change) is far above it.
    """
    net, data = linear_problem(Kx, gamma0, y)
    sim = sd.simulate(net, data, sd.TimeGrid(eta, LINEAR_STEPS), width=64, ensemble=6, seed=3)
    imbalance = sim.kernels["Phi1"][:, :, 0, 0] / Kx - sim.kernels["G1"][:, :, 0, 0]
    c = eta * gamma0 * np.sqrt(Kx) * (y - sim.f[:, :, 0])
    predicted = (1 - c[:, :-1] ** 2) * imbalance[:, :-1]
    scale = np.maximum(np.abs(imbalance[:, 1:]), np.abs(imbalance[:, :-1]))
    rel = np.abs(imbalance[:, 1:] - predicted) / scale
    assert rel.max() < 1e-8, f"imbalance map violated: max relative deviation {rel.max():.3g}"
    # the regime is really large-step: the NTK passes 2/eta in at least one network
    assert np.any(sim.sharpness * eta > 1.9)


@pytest.mark.parametrize("Kx,gamma0,y,eta", LINEAR_CASES)
def test_theory_matches_exact_discrete_oracle_at_large_eta(Kx, gamma0, y, eta):
    """Infinite-width theory at eta near/above 2/K vs the exact discrete delta method.

    Extends ``test_oracles.test_exact_discrete_fluctuations`` (eta <= 0.2) to the large-step
    regime, where the step multipliers 1 - c^2 and 1 - eta K are far from 1 and a first-order
    (Euler) treatment would be off by O(1). samples=100 is a tensor Gauss-Hermite rule with 10
    nodes per axis, exact for the degree <= 4 polynomials of the linear net (test_oracles
    docstring), so the tolerance 1e-8 relative to the largest entry is rounding with margin
    (the complex-step oracle is exact to rounding; measured ~1e-14).
    """
    net, data = linear_problem(Kx, gamma0, y)
    res = sd.solve(net, data, sd.TimeGrid(eta, LINEAR_STEPS), samples=100, seed=0)
    o = exact.discrete_fluctuations(y, gamma0, eta, LINEAR_STEPS, Kx=Kx)
    assert np.max(o["K"]) * eta > 2.0        # really past the edge at some step
    checks = [("f", res.f[:, 0], o["f"]),
              ("f_cov", res.f_cov[:, 0, :, 0], o["N_cov_f"]),
              ("ntk", res.ntk[:, 0, 0], o["K"]),
              ("ntk_var", res.ntk_var[:, 0, 0], np.diag(o["N_cov_K"])),
              ("Phi1", res.kernels["Phi1"][:, 0, 0], o["H"])]
    for name, got, want in checks:
        rel = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert rel < 1e-8, f"{name}: relative deviation {rel:.3g}"
    np.testing.assert_allclose(res.sharpness, o["K"], rtol=1e-8)


# --------------------------------------------------------------------- divergence
def test_divergence_is_reported_with_its_step():
    """eta = 2.5 is beyond stability for the linear net (2/eta = 0.8 < K(0) ~ 1.75): both the
    theory and the simulation raise FloatingPointError naming the step (step 6 here, the
    first step with non-finite values after ~|1 - eta K|^k growth plus the gamma0 feedback).

    (A tanh net at eta = 2.5 does not overflow: tanh is bounded, so its runs stay finite and
    are instead caught by the sharpness diagnostics, not by a divergence.)
    """
    b = sd.default_data()
    data = sd.Data(b.X, 3 * b.y, X_test=b.X_test)
    net = sd.mlp(hidden_layers=1, activation="linear", gamma0=2.0)
    grid = sd.TimeGrid(2.5, 100)
    steps = []
    for run in (lambda: sd.solve(net, data, grid, samples=2000, seed=0),
                lambda: sd.simulate(net, data, grid, width=256, ensemble=4, seed=0)):
        with pytest.raises(FloatingPointError, match=r"diverged at step \d+") as err:
            run()
        steps.append(int(re.search(r"at step (\d+)", str(err.value)).group(1)))
    # the width-256 networks blow up at the same step as the infinite-width dynamics
    assert steps[0] == steps[1] and 1 <= steps[0] < grid.steps


# ------------------------------------------------ tanh: edge of stability and catapult
GAMMA0_EOS = 2.0
EOS_STEPS = 60
EDGE_FROM = 16          # first step of the edge-of-stability plateau at eta = 0.7 (theory)


def eos_problem():
    b = sd.default_data()
    return (sd.mlp(hidden_layers=1, activation="tanh", gamma0=GAMMA0_EOS),
            sd.Data(b.X, 3 * b.y, X_test=b.X_test))


@lru_cache(maxsize=None)
def eos_theory(eta):
    net, data = eos_problem()
    return sd.solve(net, data, sd.TimeGrid(eta, EOS_STEPS), samples=40_000, seed=0)


@lru_cache(maxsize=None)
def eos_sim(eta, width, ensemble):
    net, data = eos_problem()
    return sd.simulate(net, data, sd.TimeGrid(eta, EOS_STEPS), width=width, ensemble=ensemble,
                       seed=11, progress=False)


def test_theory_shows_edge_of_stability_and_catapult():
    """Infinite-width signatures (no finite-N input).

    eta = 0.7 (2/eta = 2.857): an early catapult (sharpness 1.75 -> 5.4 at step 2, down to
    2.02 at step 6), then progressive sharpening, then from step 16 on the sharpness hovers
    at the edge, oscillating in [2.84, 2.93] (within -1%..+3% of 2/eta) while the loss keeps
    decreasing; gradient flow would instead sharpen to ~4.6 (measured at eta = 0.05). Bounds
    -3%..+4% leave margin for the quadrature error (~1e-3 here).
    eta = 0.9 (2/eta = 2.22): a catapult to ~4.3 and then a flat minimum at 1.98, 11% below
    2/eta, after a damped period-2 wobble (flat to 1e-3 from step 45).
    """
    sh = eos_theory(0.7).sharpness
    edge = 2 / 0.7
    plateau = sh[EDGE_FROM:] / edge
    assert plateau.min() > 0.97 and plateau.max() < 1.04, (plateau.min(), plateau.max())
    rep = stability_report(sh, 0.7)
    assert rep.first_unstable_step is not None and rep.first_unstable_step <= 2
    assert rep.fraction_near_edge >= 0.7
    assert np.all(np.diff(sh[6:EDGE_FROM]) > 0)          # progressive sharpening
    loss = 0.5 * np.sum(eos_theory(0.7).delta ** 2, axis=1)
    # at the edge the loss stays small but is not monotone (it creeps from 5e-5 to 1.5e-4)
    assert np.max(loss[EDGE_FROM:]) < 1e-3 * loss[0]

    sh9 = eos_theory(0.9).sharpness
    rep9 = stability_report(sh9, 0.9)
    assert rep9.max_sharpness > 1.8 * rep9.threshold     # catapult overshoot (4.28)
    assert np.all(sh9[30:] < 0.92 * rep9.threshold)       # settles well below the edge
    assert np.ptp(sh9[45:]) < 1e-3                        # damped period-2 wobble, then flat


def test_sharpness_theory_vs_simulation_at_the_edge():
    """Mean sharpness of N = 4000 (E = 400) and N = 16000 (E = 200) tanh networks vs the theory,
    every step through catapult, sharpening and edge of stability (eta = 0.7).

    Measured scaling (seed-independent, E = 150-1600 per width, N = 500..32000): the gap
    mean_E lambda_max - lambda_max^theory is NOT O(1/N) at these widths but ~ C / sqrt(N):
    on the plateau gap * sqrt(N) ~ -4 .. -5.8 at every N from 500 to 32000; during
    sharpening (steps 6-20) gap * sqrt(N) ~ +1..3, starting to fall only at N = 32000. The
    early catapult (|1 - eta lambda| ~ 2.8 at step 2) and the edge itself (multiplier ~ -1
    on the top mode, undamped) amplify the O(1/sqrt N) initial fluctuations, so the
    second-order term of the 1/sqrt(N) expansion is large and the fixed-t expansion
    (THEORY.md §5: t sqrt(N Var K / N), with N Var K ~ 60-90 on the plateau) is only
    marginal at these N. Hence: |gap| <= 7 / sqrt(N) + 3 se (7 = the measured envelope 5.8
    plus margin), and the test that the gap is a finite-width effect: the plateau gap
    shrinks by >= 0.7x from N = 4000 to 16000 (1/sqrt(N): 0.5, measured 0.45; no
    convergence: 1).
    """
    theory = eos_theory(0.7).sharpness
    gaps = {}
    for width, E in ((4000, 400), (16000, 200)):
        sh = eos_sim(0.7, width, E).sharpness
        gap = sh.mean(axis=0) - theory
        se = sh.std(axis=0, ddof=1) / np.sqrt(E)
        bound = 7 / np.sqrt(width) + 3 * se
        worst = np.argmax(np.abs(gap) / bound)
        assert np.all(np.abs(gap) <= bound), (
            f"N={width}: step {worst} gap {gap[worst]:.4f} > {bound[worst]:.4f}")
        # the simulated networks sit at the edge too
        assert np.all(np.abs(sh.mean(axis=0)[EDGE_FROM + 4:] * 0.7 / 2 - 1) < 0.05)
        gaps[width] = np.mean(np.abs(gap[30:]))
    assert gaps[16000] <= 0.7 * gaps[4000], gaps


def test_variance_decreases_through_the_catapult():
    """Finite-width variance can DECREASE dynamically: N Var f_0(t) on the first training point
    (theory ``f_var``) peaks at 4.55 at step 5 (the catapult), drops to 0.85 at step 6, and
    falls from 3.1 at step 2 to 0.009 at step 16 (> 100x; a period-2 wobble rides on it) as
    sharpening drives the error to zero; it rises again on the edge plateau.

    Simulation (N = 16000, E = 200): N Var with its standard error from ``variance_with_error``
    (~10%). Steps 0-6 (through the catapult peak and the drop after it) agree within 4 se
    (measured |z| <= 1.3 at N = 4000, 16000, 32000). NOT compared value by value, and not
    understood: steps 7-10 right after the catapult, where the ensemble variance sits well
    below the theory and approaches it very slowly (step 7: theory 0.985; simulation 0.45 /
    0.56 / 0.58 / 0.62 at N = 1000 / 4000 / 16000 / 32000, i.e. slower than 1/sqrt(N)); the
    catapult's |1 - eta lambda| ~ 2.8 amplification makes the leading-order expansion
    marginal there (see the sharpness test), but this was not proven. Later steps near the
    edge carry the amplified finite-N excess of the sharpness test. Asserted instead: the
    simulated variance shows the same > 20x drop from step 2 to step 16.
    """
    th = eos_theory(0.7).f_var[:, 0]
    assert th[2] / th[16] > 100 and th[5] / th[6] > 4
    assert np.all(np.diff(th[10:17:2]) < 0)       # even steps (a period-2 wobble rides on it)
    width = 16000
    var, se = variance_with_error(eos_sim(0.7, width, 200).f[:, :, 0], axis=0)
    Nvar, Nse = width * var, width * se
    z = (Nvar[:7] - th[:7]) / Nse[:7]
    assert np.all(np.abs(z) < 4), np.round(z, 2)
    assert Nvar[2] / Nvar[16] > 20 and Nvar[5] / Nvar[6] > 3, (Nvar[2], Nvar[5], Nvar[6], Nvar[16])
