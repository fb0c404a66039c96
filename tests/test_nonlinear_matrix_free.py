"""The matrix-free propagator of deep nonlinear nets (symdmft.deep.nonlinear_matrix_free,
THEORY.md §3) against the dense one (deep.propagator: -(H^{-1}) of the assembled Hessian).

Both read the same site averages (same rules, same source roots), so they must agree to
rounding: any difference is in the matrix-free algebra (the D'^T chain rule, the order of the
substitution, the conjugate placement, kappa'), not in sampling. The dense propagator is
itself checked against trained tanh networks (tests/test_deep_propagator.py).
"""
import numpy as np
import pytest

import symdmft as sd
from symdmft.deep.nonlinear_matrix_free import NonlinearOperator, solve_nonlinear_matrix_free
from symdmft.deep.propagator import solve_deep_propagator
from symdmft.deep.rich import solve_rich_sampled
from symdmft.runtime.samplers import make_rule


def _problem(L, P, steps, center, test_point):
    X = np.random.default_rng(0).standard_normal((P + 1, 3))
    data = sd.Data(X[:P], np.array([1.0, -0.5])[:P], X_test=X[P:] if test_point else None)
    net, grid = sd.mlp(L, "tanh", 1.2, center=center), sd.TimeGrid(0.3, steps)
    return net, data, grid, solve_rich_sampled(net, data, grid, samples=2048, seed=0)


@pytest.mark.parametrize("L, P, steps, center, test_point", [(2, 1, 2, False, False), (3, 1, 2, False, False),
                                                            (2, 1, 3, True, False), (2, 2, 1, True, True)])
def test_matrix_free_equals_the_dense_propagator(L, P, steps, center, test_point):
    """N Cov f and every kernel's N Var, centred and not, a test point, L = 2 and 3: equal to
    rounding (measured <= 2e-15 relative); bound 1e-10 relative."""
    net, data, grid, saddle = _problem(L, P, steps, center, test_point)
    ref = solve_deep_propagator(net, data, grid, saddle, samples=512)
    res = solve_nonlinear_matrix_free(net, data, grid, saddle, samples=512)
    assert np.max(np.abs(res.f_cov - ref.f_cov)) <= 1e-10 * np.max(np.abs(ref.f_cov))
    for k, v in ref.kernels_var.items():
        assert np.max(np.abs(res.kernels_var[k] - v)) <= 1e-10 * np.max(np.abs(v)), k


def test_each_group_feeds_only_earlier_groups():
    """The substitution's premise: D'^T of a group's entries (time slice k, frontier order) is
    zero on that group and on every later one, so each u is final when it is used. Exact zeros
    are not required of the arithmetic, but the causal masks make them exact here."""
    net, data, grid, saddle = _problem(2, 1, 2, True, False)
    op = NonlinearOperator(net, saddle, grid, data.P, lambda l, dim: make_rule(dim, 256, 7919 * l, "qmc"))
    rng = np.random.default_rng(1)
    order = [(k, g) for k in range(op.T1) for g in op.groups(k)]
    for i, (k, group) in enumerate(order):
        y = op.zeros()
        for name, mask in group.items():
            y[name] = rng.standard_normal(mask.shape) * mask
        d = op.vjp(y)
        assert any(np.any(v) for v in d.values()) or k == 0, (k, list(group))
        for _, later in order[i:]:
            for name, mask in later.items():
                assert not np.any(d[name][mask]), (k, list(group), name)
