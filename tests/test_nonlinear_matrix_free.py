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


def test_chosen_observables_equal_the_dense_entries():
    """f_steps / kernel_steps: the requested entries equal the dense propagator's (to rounding,
    bound 1e-10 relative), the others are NaN; a bad step list is refused by name before any
    site is sampled."""
    net, data, grid, saddle = _problem(2, 2, 2, True, True)
    ref = solve_deep_propagator(net, data, grid, saddle, samples=512)
    res = solve_nonlinear_matrix_free(net, data, grid, saddle, samples=512, f_steps=[2], kernel_steps=[0, 2])
    block = res.f_cov[2, :, 2, :]
    assert np.max(np.abs(block - ref.f_cov[2, :, 2, :])) <= 1e-10 * np.max(np.abs(ref.f_cov))
    assert np.isnan(res.f_cov[1]).all() and np.isnan(res.f_cov[2, :, 0]).all()
    for k, v in ref.kernels_var.items():
        assert np.max(np.abs(res.kernels_var[k][[0, 2]] - v[[0, 2]])) <= 1e-10 * np.max(np.abs(v)), k
        assert np.isnan(res.kernels_var[k][1]).all(), k
    none = solve_nonlinear_matrix_free(net, data, grid, saddle, samples=512, f_steps=[], kernel_steps=[2])
    assert np.isnan(none.f_cov).all() and np.isfinite(none.kernels_var["K"][2]).all()
    for name, bad in (("f_steps", [3]), ("kernel_steps", [-1]), ("kernel_steps", "last")):
        with pytest.raises(ValueError, match=name):
            solve_nonlinear_matrix_free(net, data, grid, saddle, samples=512, **{name: bad})


def test_a_slice_needs_only_the_steps_up_to_it():
    """vjp(y, k) for y on time slices <= k (the substitution's cheaper call, every layer cut to
    its first (k + 1) P_all indices) equals the full vjp(y) to rounding (bound 1e-13)."""
    net, data, grid, saddle = _problem(3, 2, 2, True, True)
    op = NonlinearOperator(net, saddle, grid, data.P, lambda l, dim: make_rule(dim, 128, 7919 * l, "qmc"))
    rng = np.random.default_rng(2)
    for k in range(op.T1):
        for group in op.groups(k):
            y = op.zeros()
            for name, mask in group.items():
                y[name] = rng.standard_normal(mask.shape) * mask
            full, cut = op.vjp(y), op.vjp(y, k)
            for name in full:
                assert np.max(np.abs(full[name] - cut[name])) <= 1e-13 * max(1.0, np.max(np.abs(full[name]))), name


@pytest.mark.parametrize("L, P, steps, center", [(2, 1, 3, False), (3, 2, 2, True)])
def test_sweep_equals_the_group_by_group_substitution(L, P, steps, center):
    """The accumulating sweep (deep.nonlinear_sweep, what solve_nonlinear_matrix_free uses) and
    the reference substitution (one layer VJP per group) give the same u = (I - D')^{-T} c for
    a c on every coordinate of q': rounding (measured <= 9e-15 on entries up to 20); bound
    1e-12 relative."""
    from symdmft.deep.nonlinear_sweep import Sweep
    net, data, grid, saddle = _problem(L, P, steps, center, center)
    op = NonlinearOperator(net, saddle, grid, data.P, lambda l, dim: make_rule(dim, 256, 7919 * l, "qmc"))
    rng = np.random.default_rng(1)
    c = op.zeros()
    for k in range(op.T1):
        for group in op.groups(k):
            for name, mask in group.items():
                c[name] = c[name] + rng.standard_normal(mask.shape) * mask
    ref, got = op.backward(c), Sweep(op).backward(c)
    for name in ref:
        assert np.max(np.abs(got[name] - ref[name])) <= 1e-12 * np.max(np.abs(ref[name])), name
