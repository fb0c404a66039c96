"""The matrix-free deep linear propagator (THEORY.md §3): every piece against the dense one,
which is itself checked against O6/O7, sd.solve at L = 1 and trained networks
(tests/test_deep_linear_propagator.py), and the large-problem result against trained networks
where the dense Hessian (27,000 rows) no longer fits a test.
"""
import numpy as np
import pytest

import symdmft as sd
from symdmft.deep.linear_action import action_hessian, theory_form
from symdmft.deep.linear_layer import LinearLayer
from symdmft.deep.linear_matrix_free import solve_linear_matrix_free
from symdmft.deep.linear_operator import ActionOperator
from symdmft.deep.linear_propagator import (_Layout, _saddle_tangents, saddle_jacobian, site_kappa,
                                            solve_linear_propagator)
from symdmft.deep.linear_rich import solve_linear_rich
from symdmft.deep.linear_substitution import Substitution

D0 = sd.default_data()
TWO_AND_TEST = sd.Data(D0.X[:2], D0.y[:2], X_test=D0.X_test)


def test_generated_layer_values_are_the_layer_map():
    """The generated values (C .. Q) equal the module's formulas written out with NumPy here
    (rounding: 1e-12), and fields() gives M S M^T, N R N^T, g0 M Q N^T."""
    rng = np.random.default_rng(1)
    n, g0 = 6, 0.9
    X, Y = (a @ a.T / n + np.eye(n) for a in rng.normal(size=(2, n, n)))
    low = np.tril(np.ones((n, n)), -1)
    Ab, Bb, W = (0.3 * rng.normal(size=(n, n)) * low for _ in range(3))
    layer = LinearLayer(g0, X, Y, Ab, Bb, W)
    C, E = Ab + X * W, Bb + Y * W
    M, N = np.linalg.inv(np.eye(n) - g0**2 * C @ E), np.linalg.inv(np.eye(n) - g0**2 * E @ C)
    S, R, Q = X + g0**2 * C @ Y @ C.T, Y + g0**2 * E @ X @ E.T, X @ E.T + C @ Y
    for got, want in zip((layer.C, layer.E, layer.M, layer.N, layer.S, layer.R, layer.Q), (C, E, M, N, S, R, Q)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    for got, want in zip(layer.fields(), (M @ S @ M.T, N @ R @ N.T, g0 * M @ Q @ N.T)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    no_responses = LinearLayer(g0, X, Y, 0.0, 0.0, W)                     # Ab, Bb absent
    np.testing.assert_allclose(no_responses.C, X * W, rtol=0, atol=0)


def test_layer_adjoint_is_the_transpose_of_the_tangent():
    """<c, J d> = <J^T c, d> for random directions on a random causal layer (rounding: 1e-13)."""
    rng = np.random.default_rng(0)
    n, k = 7, 3
    X, Y = (a @ a.T / n + np.eye(n) for a in rng.normal(size=(2, n, n)))
    low = np.tril(np.ones((n, n)), -1)
    Ab, Bb, W = (0.3 * rng.normal(size=(n, n)) * low for _ in range(3))
    layer = LinearLayer(1.1, X, Y, Ab, Bb, W)
    ins = [rng.normal(size=(k, n, n)) for _ in range(5)]
    outs = layer.jvp(*ins)
    cots = [rng.normal(size=o.shape) for o in outs]
    lhs = sum(np.sum(a * b, axis=tuple(range(1, a.ndim))) for a, b in zip(outs, cots))
    rhs = sum(np.sum(a * b, axis=(1, 2)) for a, b in zip(ins, layer.vjp(*cots)))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-13)


def _dense(L, center):
    """The dense Hessian, its THEORY.md §3 form and the operator, L layers, 2 + 1 points, 3 steps."""
    g0, eta, T = 1.2, 0.15, 3
    data = TWO_AND_TEST
    res = solve_linear_rich(sd.mlp(L, "linear", g0, center=center), data, sd.TimeGrid(eta, T))
    P, Pa = data.P, data.P_all
    lay = _Layout(L, (T + 1) * Pa)
    out, geo = _saddle_tangents(res, lay, g0, eta, P, Pa)
    D = saddle_jacobian(res, lay, g0, eta, P, Pa)
    kappa = site_kappa(res, lay, g0, eta, P, Pa)
    if center:                                   # as solve_linear_propagator does
        sf, n = lay.slices["f"], lay.n
        Tc = np.eye(n)
        Tc[:, :Pa] -= np.kron(np.ones((T + 1, 1)), np.eye(Pa))
        D[sf] = Tc @ D[sf]
        kappa[sf] = Tc @ kappa[sf]
        kappa[:, sf] = kappa[:, sf] @ Tc.T
    H = action_hessian(res, lay, out, geo, kappa, D, g0, eta)
    return lay, H, theory_form(lay, H, g0, T + 1, Pa), ActionOperator(res, g0, eta, P, center=center)


def _unflat(op, lay, z):
    v = op.zeros_v(z.shape[0])
    for name, s in lay.slices.items():
        v[name] = z[:, s].reshape(v[name].shape).copy()
    return v


@pytest.mark.parametrize("L,center", [(2, True), (3, False)])
def test_hessian_products_equal_the_dense_hessian(L, center):
    """H z from the operator = the dense action_hessian times z, random z (rounding: 1e-13)."""
    lay, H, _, op = _dense(L, center)
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, H.shape[0]))
    zv = _unflat(op, lay, z)
    zw, pos = {}, lay.size
    for name in op.zeros_w(0):
        m = lay.slices[name].stop - lay.slices[name].start
        zw[name] = z[:, pos:pos + m].reshape(zv[name].shape)
        pos += m
    hv, hw = op.apply(zv, zw)
    got = np.concatenate([hv[k].reshape(3, -1) for k in lay.slices]
                         + [hw[k].reshape(3, -1) for k in zw], axis=1)
    ref = z @ H.T
    assert np.abs(got - ref).max() <= 1e-13 * np.abs(ref).max()


@pytest.mark.parametrize("L,center", [(2, True), (3, False)])
def test_substitution_solves_with_I_minus_D_prime(L, center):
    """forward(b) = (I - D')^{-1} b and backward(c) = (I - D')^{-T} c, the dense matrices of
    THEORY.md §3's form, random right-hand sides on q'; entries outside q' stay zero
    (rounding of a unit triangular solve: 1e-12)."""
    lay, _, tf, op = _dense(L, center)
    sub, q = Substitution(op), tf["q"]
    rng = np.random.default_rng(2)
    rhs = np.zeros((2, lay.size))
    rhs[:, q] = rng.normal(size=(2, q.size))
    for run, M in ((sub.forward, tf["I_minus_D"]), (sub.backward, tf["I_minus_D"].T)):
        out = run(_unflat(op, lay, rhs))
        got = np.concatenate([out[k].reshape(2, -1) for k in lay.slices], axis=1)
        ref = np.linalg.solve(M, rhs[:, q].T).T
        assert np.abs(got[:, q] - ref).max() <= 1e-12 * np.abs(ref).max()
        outside = np.ones(lay.size, bool)
        outside[q] = False
        assert np.abs(got[:, outside]).max() == 0.0


@pytest.mark.parametrize("L,center", [(2, True), (3, False)])
def test_matrix_free_equals_dense_propagator(L, center):
    """N Cov f (train and test points, all step pairs) and N Var of every equal-time kernel and
    the NTK equal the dense propagator's (1e-12 of their scale: rounding), with small chunks."""
    net, grid = sd.mlp(L, "linear", 1.2, center=center), sd.TimeGrid(0.15, 3)
    ref = solve_linear_propagator(net, TWO_AND_TEST, grid)
    r = solve_linear_matrix_free(net, TWO_AND_TEST, grid, chunk=5)
    assert np.abs(r.f_cov - ref.f_cov).max() <= 1e-12 * np.abs(ref.f_cov).max()
    assert set(r.kernels_var) == set(ref.kernels_var)
    for name, v in ref.kernels_var.items():
        assert np.abs(r.kernels_var[name] - v).max() <= 1e-12 * np.abs(v).max(), name


def test_kernel_steps_and_bad_input():
    """Layer kernel variances only at the steps asked for (NaN elsewhere, the same numbers
    where computed), the NTK's at every step; by default all steps up to KERNEL_STEPS, then
    that many including the last; saved files hold the computed steps (coordinate t_kernel);
    bad arguments are refused by name before any work."""
    net, grid = sd.mlp(2, "linear", 1.0), sd.TimeGrid(0.1, 4)
    full = solve_linear_matrix_free(net, TWO_AND_TEST, grid)
    part = solve_linear_matrix_free(net, TWO_AND_TEST, grid, kernel_steps=[0, 4])
    assert np.isnan(part.kernels_var["Phi2"][1:4]).all()
    for name in ("Phi2", "G1"):
        np.testing.assert_allclose(part.kernels_var[name][[0, 4]], full.kernels_var[name][[0, 4]],
                                   rtol=1e-12)
    np.testing.assert_allclose(part.ntk_var, full.ntk_var, rtol=1e-12)
    np.testing.assert_allclose(part.f_cov, full.f_cov, rtol=1e-12)
    ds = part.to_xarray()
    assert ds["Phi2_var"].dims == ("t_kernel", "i", "j") and ds["ntk_var"].dims == ("t", "i", "j")
    np.testing.assert_allclose(ds["t_kernel"].values, grid.t[[0, 4]])
    long = solve_linear_matrix_free(net, sd.Data(np.ones((1, 4)), np.array([1.0])), sd.TimeGrid(0.1, 30))
    assert long.params["kernel_steps"][0] == 0 and long.params["kernel_steps"][-1] == 30
    assert np.isfinite(long.ntk_var).all() and np.isnan(long.kernels_var["Phi1"][1]).all()
    for bad in ([5], [], "some", [0.5]):
        with pytest.raises(ValueError, match="kernel_steps"):
            solve_linear_matrix_free(net, TWO_AND_TEST, grid, kernel_steps=bad)
    with pytest.raises(ValueError, match="chunk"):
        solve_linear_matrix_free(net, TWO_AND_TEST, grid, chunk=0)
    with pytest.raises(ValueError, match="activation"):
        solve_linear_matrix_free(sd.mlp(2, "tanh", 1.0), TWO_AND_TEST, grid)


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """A run killed after two of its kernel chunks (f's covariance and 2 x 4 kernel entries
    saved) resumes from the file: it computes only the rest (counted adjoint passes) and gives
    the numbers of an uninterrupted run exactly (the same arithmetic). Another problem with
    the same file, or a file that is not a checkpoint, is refused by name before any work."""
    import symdmft.deep.linear_matrix_free as mf
    net, grid, path = sd.mlp(2, "linear", 1.0), sd.TimeGrid(0.1, 3), tmp_path / "run.npz"
    whole = solve_linear_matrix_free(net, TWO_AND_TEST, grid, chunk=4)
    real, calls = mf.adjoint_pairs, []

    def dies_after(limit):
        def counted(*args):
            calls.append(1)
            if len(calls) > limit:
                raise KeyboardInterrupt
            return real(*args)
        return counted
    n_f = (grid.steps + 1) * TWO_AND_TEST.P_all // 4                 # f's chunks: 12 / 4 = 3
    monkeypatch.setattr(mf, "adjoint_pairs", dies_after(n_f + 2))
    with pytest.raises(KeyboardInterrupt):
        solve_linear_matrix_free(net, TWO_AND_TEST, grid, chunk=4, checkpoint=path)
    calls.clear()
    monkeypatch.setattr(mf, "adjoint_pairs", dies_after(10**6))
    resumed = solve_linear_matrix_free(net, TWO_AND_TEST, grid, chunk=4, checkpoint=path)
    n_kernel = len(mf._kernel_specs(2, np.arange(4), 4, 2))           # 4 names x 4 steps x 3 + NTK 12
    assert len(calls) == -(-(n_kernel - 8) // 4)
    assert resumed.params["resumed_from"] == str(path) and "resumed_from" not in whole.params
    np.testing.assert_array_equal(resumed.f_cov, whole.f_cov)
    for name, v in whole.kernels_var.items():
        np.testing.assert_array_equal(resumed.kernels_var[name], v)
    with pytest.raises(ValueError, match="checkpoint .* another problem"):
        solve_linear_matrix_free(sd.mlp(2, "linear", 1.1), TWO_AND_TEST, grid, checkpoint=path)
    junk = tmp_path / "junk.npz"
    junk.write_text("not numpy")
    with pytest.raises(ValueError, match="not a symdmft checkpoint"):
        solve_linear_matrix_free(net, TWO_AND_TEST, grid, checkpoint=junk)


@pytest.mark.slow
def test_large_problem_against_trained_networks():
    """L = 3, gamma0 = 1, two training points and a test point, 20 steps of eta = 0.05 (n = 63:
    the dense Hessian would have 27,783 rows), E = 2000 nets at N = 192 and 384 (seed 5).
    N Cov(f_mu(t), f_nu(s)) over all 3969 entries: the two-width extrapolation 2 C_384 - C_192
    within 5 of its standard errors (sqrt(5) times those of one entry,
    sqrt((C_ii C_jj + C_ij^2) / (E-1))); measured 4.3. Single widths are not held to sampling
    error: the training points' variance falls to 1e-3 of its start by t = 1, where the O(1/N)
    term dominates (THEORY.md §5; measured 60% / 15% off at N = 192 / 384, shrinking as 1/N).
    The test point keeps O(1) variance: within 4 sampling errors + 10% at N = 384. The NTK
    variance at every step within 4 se + 10% at both widths (se = sqrt(2/(E-1)) = 3.2%;
    measured 2.8% / 4.9%)."""
    net, grid, E = sd.mlp(3, "linear", 1.0), sd.TimeGrid(0.05, 20), 2000
    r = solve_linear_matrix_free(net, TWO_AND_TEST, grid, kernel_steps="all")
    th = r.f_cov
    var = np.einsum("tptp->tp", th)
    se = np.sqrt((var[:, :, None, None] * var[None, None] + th**2) / (E - 1))
    rel = np.sqrt(2 / (E - 1))
    cov = {}
    for N in (192, 384):
        s = sd.simulate(net, TWO_AND_TEST, grid, N, E, seed=5)
        x = s.f - s.f.mean(0)
        cov[N] = N * np.einsum("etp,esq->tpsq", x, x) / (E - 1)
        kv = N * s.ntk.var(0, ddof=1)
        assert np.all(np.abs(kv / r.kernels_var["K"] - 1) <= 4 * rel + 0.10), N
    test_var = np.einsum("tptp->tp", cov[384])[:, 2]
    assert np.all(np.abs(test_var / var[:, 2] - 1) <= 4 * rel + 0.10)
    extrap = 2 * cov[384] - cov[192]
    assert np.all(np.abs(extrap - th) <= 5 * np.sqrt(5) * se)
