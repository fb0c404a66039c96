"""Deep MLPs in the rich regime: the infinite-width site process with responses (THEORY.md §2).

Structure (exact or QMC-level checks) and the ground truth: ensembles of trained width-N
networks from ``sd.simulate`` (THEORY.md §5). Every tolerance states where it comes from.
"""
import numpy as np
import pytest

import symdmft as sd
from symdmft.deep.rich import solve_rich_sampled
from symdmft.deep.rich_frontier import run_frontier
from symdmft.deep.rich_result import RichResult
from symdmft.deep.rich_sources import SourceLayout, source_rule

DATA = sd.default_data()
GRID = sd.TimeGrid(0.2, 10)


@pytest.mark.parametrize("kw,name", [({"samples": 0}, "samples"), ({"seed": -1}, "seed"),
                                     ({"sampler": "grid"}, "sampler"),
                                     ({"sampler": "gauss-hermite"}, "sampler"),
                                     ({"responses": "some"}, "responses")])
def test_bad_arguments_name_the_parameter(kw, name):
    with pytest.raises(ValueError, match=name):
        solve_rich_sampled(sd.mlp(hidden_layers=2), DATA, GRID, **kw)


def test_bad_objects_and_depth():
    with pytest.raises(TypeError, match="data"):
        solve_rich_sampled(sd.mlp(hidden_layers=2), "data", GRID)
    with pytest.raises(ValueError, match="hidden_layers"):
        solve_rich_sampled(sd.mlp(hidden_layers=1), DATA, GRID)


def test_structure_of_the_saddle():
    """Exact properties, L = 3 (two inner layers with both responses):

    * Phi^l, G^l symmetric under (mu, t) <-> (nu, s) (to rounding: stored mirrored);
    * A^l(t, s) = 0 for s >= t (strictly causal) and nonzero below; B^l(t, s) = 0 for s > t
      with a nonzero equal-time part (phi''(h) z at least);
    * a full replay of the site process driven by the solved order parameters re-estimates
      all of them, A and B included, to rounding (1e-12): one frontier pass is the fixed point.
    """
    net = sd.mlp(hidden_layers=3, activation="tanh", gamma0=1.0)
    grid = sd.TimeGrid(0.2, 5)
    res = solve_rich_sampled(net, DATA, grid, samples=1024, seed=3, verify=True)
    assert isinstance(res, RichResult)
    assert res.convergence["residual"] <= 1e-12 and res.convergence["iterations"] == 1
    T1 = grid.steps + 1
    for M in res.Phi + res.G:
        assert np.array_equal(M, M.transpose(2, 3, 0, 1))
    t, s = np.meshgrid(np.arange(T1), np.arange(T1), indexing="ij")
    for A in res.A:
        At = A.transpose(0, 2, 1, 3)                              # (t, s, mu, nu)
        assert np.all(At[s >= t] == 0.0)
        assert np.abs(At[t == s + 1]).max() > 1e-3
    for B in res.B:
        Bt = B.transpose(0, 2, 1, 3)
        assert np.all(Bt[s > t] == 0.0)
        assert np.abs(Bt[t == s]).max() > 1e-2
    assert res.f.shape == (T1, DATA.P_all) and res.kernels["K"].shape == (T1, DATA.P, DATA.P)
