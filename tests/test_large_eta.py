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
