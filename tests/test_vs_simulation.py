"""Theory against trained networks (THEORY.md §5): the ground truth.

Two-layer networks at gamma0 = 1 on the embedded default problem (3 train + 1 test
point), tanh and a user-string activation, trained by ``sd.simulate`` at two widths.
``N Var f_mu(t)`` on every point and ``N Var K_mumu(t)`` are compared at several times
with the leading-order propagator.

Tolerance, per compared entry: ``4 se + |theory| * 16 / N``.
* ``se`` is the standard error of a variance estimated from E networks,
  ``sqrt((m4 - s^4) / E)`` with the sample fourth moment (about ``sqrt(2/E)`` relative,
  2.2% at E = 4000); 4 se keeps the false-alarm rate below 1e-3 over all entries.
* ``16 / N`` bounds the next-order (O(1/N)) relative correction for t <= 2: the
  expansion parameter is ``t sqrt(N Var K / N) / K`` (THEORY.md §5), about 0.1 here at
  N = 512, and its square times the few terms of the next order stays under 16/N.
The theory's own quadrature error (2^15 Sobol points) is far below both.
"""
import numpy as np
import pytest

import symdmft as sd
from symdmft.observables.compare import variance_with_error

WIDTHS = (512, 1024)
ENSEMBLE = 4000
TIMES = (0, 5, 10, 20)            # steps; eta = 0.1 so t = 0, 0.5, 1, 2


def _n_var(x, width):
    """N Var over networks (axis 0) and its standard error from the fourth moment."""
    var, se = variance_with_error(x)
    return width * var, width * se


@pytest.fixture(scope="module", params=["tanh", "sin(h) + 0.2*h"])
def case(request):
    net = sd.mlp(activation=request.param, gamma0=1.0)
    data, grid = sd.default_data(), sd.TimeGrid(eta=0.1, steps=20)
    theory = sd.solve(net, data, grid, samples=2 ** 15, seed=0)
    sims = {N: sd.simulate(net, data, grid, width=N, ensemble=ENSEMBLE, seed=7) for N in WIDTHS}
    return theory, sims


@pytest.mark.parametrize("width", WIDTHS)
def test_prediction_variance_matches_ensembles(case, width):
    theory, sims = case
    var, se = _n_var(sims[width].f, width)
    k = list(TIMES)
    th = theory.f_var[k]
    tol = 4 * se[k] + np.abs(th) * 16 / width
    assert np.all(np.abs(var[k] - th) <= tol), (var[k], th, tol)


@pytest.mark.parametrize("width", WIDTHS)
def test_ntk_variance_matches_ensembles(case, width):
    theory, sims = case
    diag = np.einsum("etii->eti", sims[width].ntk)
    var, se = _n_var(diag, width)
    k = list(TIMES)
    th = np.einsum("tii->ti", theory.ntk_var)[k]
    tol = 4 * se[k] + np.abs(th) * 16 / width
    assert np.all(np.abs(var[k] - th) <= tol), (var[k], th, tol)


def test_infinite_width_means_match_ensembles(case):
    """Ensemble means of f and K agree with the saddle up to O(1/N) + sampling error.

    The mean of f over E networks has standard error ``sqrt(Var f / E)``; its finite-width
    bias is O(1/N) with coefficient |N (E f - f_inf)| < 2 here (THEORY.md §3, bias).
    """
    theory, sims = case
    N = WIDTHS[-1]
    f = sims[N].f
    se = f.std(axis=0) / np.sqrt(f.shape[0])
    assert np.all(np.abs(f.mean(axis=0) - theory.f) <= 4 * se + 2.0 / N)
    K = sims[N].ntk
    seK = K.std(axis=0) / np.sqrt(K.shape[0])
    assert np.all(np.abs(K.mean(axis=0) - theory.ntk) <= 4 * seK + 4.0 / N)
