"""The finite-width simulator (symdmft.simulate): update rule, kernels, reproducibility.

THEORY.md §1 defines the network, the discrete gradient-descent update and the kernels;
§4 O7 the variance of the initial outputs; §5 the sampling error of ensemble estimates.
"""
import warnings

import numpy as np
import pytest

import symdmft as sd
from symdmft.simulate import SimResult, simulate
from symdmft.simulate.network import NetworkBatch


def small_data(P=3, D=2, P_test=1, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P + P_test, D))
    return sd.Data(X[:P], rng.standard_normal(P), X_test=X[P:])


def params_of(batch):
    return np.concatenate([W.ravel() for W in batch.W] + [batch.w.ravel()])


def batch_from(net, theta, N, D):
    """A one-network batch whose flattened weights (W^0, ..., W^{L-1}, w) are ``theta``."""
    shapes = [(1, N, D)] + [(1, N, N)] * (net.hidden_layers - 1) + [(1, N)]
    arrays, k = [], 0
    for s in shapes:
        n = int(np.prod(s))
        arrays.append(theta[k:k + n].reshape(s).copy())
        k += n
    return NetworkBatch(net, arrays[:-1], arrays[-1])


@pytest.mark.parametrize("L", [1, 2])
def test_update_is_gradient_descent_and_kernel_is_ntk(L):
    """The §1 update equals GD with step eta gamma0^2 N on 1/2 sum_train (y - f)^2, and
    K = gamma0^2 N J J^T with J = df/dtheta (the NTK with the learning-rate factor).

    Reference: central finite differences with step 1e-6 on a tiny tanh network (N = 3,
    D = 2, 3 train points plus a test point that must not enter the loss; gamma0 = 0.7 so a
    misplaced gamma0 shows). Truncation error ~ eps^2 |f'''| ~ 1e-12, round-off
    ~ 1e-16 / eps ~ 1e-10, against O(0.1-1) entries: rtol 1e-6 has a wide margin, while any
    wrong factor (sqrt N, gamma0, 2) fails by orders of magnitude.
    """
    N, eta, eps = 3, 0.1, 1e-6
    net = sd.mlp(L, "tanh", gamma0=0.7)
    data = small_data()
    P, D = data.P, data.D
    batch = NetworkBatch.initialise(net, N, D, [np.random.default_rng(5)])
    theta = params_of(batch)

    def f_train(th):
        return batch_from(net, th, N, D).forward(data.X_all).f[0, :P]

    def loss(th):
        return 0.5 * np.sum((data.y - f_train(th)) ** 2)

    basis = np.eye(theta.size)
    grad = np.array([(loss(theta + eps * e) - loss(theta - eps * e)) / (2 * eps) for e in basis])
    J = np.array([(f_train(theta + eps * e) - f_train(theta - eps * e)) / (2 * eps) for e in basis]).T

    fwd = batch.forward(data.X_all)
    g = batch.backward(fwd, P)
    kern = batch.kernels(fwd, g, data.X @ data.X.T / D)
    batch.update(fwd, g, data.y - fwd.f[:, :P], data.X, eta)
    step = params_of(batch) - theta
    np.testing.assert_allclose(step, -eta * net.gamma0**2 * N * grad, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(kern["K"][0], net.gamma0**2 * N * J @ J.T, rtol=1e-6, atol=1e-9)


def test_kernel_drives_the_outputs():
    """One step changes f by eta K Delta + O(eta^2) (THEORY.md §1, df/dt = K Delta).

    The one-step remainder is a Taylor remainder, quadratic in eta, so halving eta must cut
    |f(1) - f(0) - eta K Delta| by 4; with the cubic term the ratio is 4 (1 + O(eta)), so
    [3.5, 4.5] for eta <= 0.02. A kernel missing a layer term leaves an O(eta) error, ratio 2.
    """
    net, data = sd.mlp(2, "tanh", gamma0=1.3), small_data()
    errs = []
    for eta in (0.02, 0.01):
        sim = simulate(net, data, sd.TimeGrid(eta, 1), width=32, ensemble=3, seed=4)
        delta = data.y - sim.f[:, 0, :data.P]
        pred = eta * np.einsum("eij,ej->ei", sim.ntk[:, 0], delta)
        errs.append(np.abs(sim.f[:, 1, :data.P] - sim.f[:, 0, :data.P] - pred).max())
    assert 3.5 < errs[0] / errs[1] < 4.5


def test_result_does_not_depend_on_chunk():
    """Each network draws from its own generator and is computed slice by slice: exact equality."""
    net, data, grid = sd.mlp(2, "tanh"), small_data(), sd.TimeGrid(0.1, 5)
    ref = simulate(net, data, grid, width=16, ensemble=7, seed=3)
    for chunk in (1, 3, 7):
        sim = simulate(net, data, grid, width=16, ensemble=7, seed=3, chunk=chunk)
        np.testing.assert_array_equal(sim.f, ref.f)
        for name in ref.kernels:
            np.testing.assert_array_equal(sim.kernels[name], ref.kernels[name])
    other = simulate(net, data, grid, width=16, ensemble=7, seed=4)
    assert not np.array_equal(other.f, ref.f)


def test_initial_ntk_mean_linear():
    """Linear, L = 1: K(0) = G^1 Kx + Phi^1 with G^1 = |w|^2/N, Phi^1 = (W^0 X)(W^0 X)^T/(N D).

    E K(0) = 2 Kx exactly at any N. Per network Var K_ij = (2 Kx_ij^2 + Kx_ii Kx_jj + Kx_ij^2)/N
    (w and W^0 independent; Isserlis), so the ensemble mean has standard error
    sqrt(Var / E); every entry must lie within 5 of them (9 entries: chance of a false
    failure ~ 1e-5). N = 4000, E = 100 makes that error about 0.2% of Kx.
    """
    N, E = 4000, 100
    data = sd.default_data()
    Kx = data.X @ data.X.T / data.D
    sim = simulate(sd.mlp(1, "linear"), data, sd.TimeGrid(0.01, 1), width=N, ensemble=E, seed=11)
    var = (3 * Kx**2 + np.outer(np.diag(Kx), np.diag(Kx))) / N
    err = np.abs(sim.ntk[:, 0].mean(0) - 2 * Kx)
    assert np.all(err < 5 * np.sqrt(var / E))
    np.testing.assert_allclose(sim.kernels["Phi1"][:, 0].mean(0), Kx, atol=5 * np.sqrt(2 * Kx.max()**2 / N / E))


@pytest.mark.parametrize("activation, L, gamma0, N", [("linear", 1, 0.5, 256), ("tanh", 2, 1.5, 128)])
def test_initial_output_variance(activation, L, gamma0, N):
    """THEORY.md O7: N Var f_mu(0) = Phi^L_mumu(0,0) / gamma0^2 (uncentred, all points).

    Exact at any N and depth: w is independent of h^L, so Var f = E|phi(h^L)|^2 / (gamma0 N)^2.
    The reference is diag Kx_all (linear, L = 1; test point included) or the ensemble's own
    mean Phi^L_mumu (tanh, L = 2, train points; its sampling error is O(1/sqrt(N E)), negligible). A variance from E samples has relative
    standard error sqrt(2/E) for Gaussian f (THEORY.md §5); f's excess kurtosis is O(1/N)
    (< 0.1 here, adding < 3% to that error), so 4 sqrt(2/E) = 8.9% at E = 4000 is a 4-sigma bound.
    """
    E = 4000
    data = sd.default_data()
    sim = simulate(sd.mlp(L, activation, gamma0=gamma0), data, sd.TimeGrid(0.01, 1),
                   width=N, ensemble=E, seed=7)
    n_var = N * sim.f[:, 0].var(axis=0, ddof=1)
    if activation == "linear":
        ref = np.diag(data.Kx_all) / gamma0**2
    else:  # kernels are recorded on training points only
        ref = sim.kernels[f"Phi{L}"][:, 0].mean(0).diagonal() / gamma0**2
        n_var = n_var[:data.P]
    np.testing.assert_allclose(n_var, ref, rtol=4 * np.sqrt(2 / E))


def test_divergence_raises_with_step():
    """A huge eta must raise FloatingPointError naming the step, without numpy warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FloatingPointError, match=r"diverged at step \d+ \(t = .*reduce eta"):
            simulate(sd.mlp(1, "linear"), small_data(), sd.TimeGrid(50.0, 200), width=16, ensemble=3)


@pytest.mark.parametrize("kwargs, name", [
    ({"width": 0}, "width"), ({"width": 2.5}, "width"), ({"width": "8"}, "width"),
    ({"ensemble": -1}, "ensemble"), ({"ensemble": True}, "ensemble"),
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"chunk": 0}, "chunk"),
])
def test_bad_arguments_name_the_parameter(kwargs, name):
    args = {"width": 8, "ensemble": 2, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=name):
        simulate(sd.mlp(1, "tanh"), small_data(), sd.TimeGrid(0.1, 2), **args)


def test_centred_networks():
    """center=True: f(0) == 0 exactly; t = 0 kernels equal the uncentred ones (same init);
    the first step uses Delta = y, checked against a hand-made update of the same network
    (rtol 1e-12: identical arithmetic up to summation order)."""
    data, grid = small_data(), sd.TimeGrid(0.1, 3)
    net_c = sd.mlp(2, "tanh", gamma0=0.8, center=True)
    sim_c = simulate(net_c, data, grid, width=16, ensemble=4, seed=2)
    sim_u = simulate(sd.mlp(2, "tanh", gamma0=0.8), data, grid, width=16, ensemble=4, seed=2)
    assert np.all(sim_c.f[:, 0] == 0.0)
    for name in sim_c.kernels:
        np.testing.assert_array_equal(sim_c.kernels[name][:, 0], sim_u.kernels[name][:, 0])

    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(2).spawn(4)]
    batch = NetworkBatch.initialise(net_c, 16, data.D, rngs)
    fwd = batch.forward(data.X_all)
    batch.update(fwd, batch.backward(fwd, data.P), np.tile(data.y, (4, 1)), data.X, grid.eta)
    np.testing.assert_allclose(sim_c.f[:, 1], batch.forward(data.X_all).f - fwd.f, rtol=1e-12, atol=1e-15)


def test_result_layout_and_xarray(capsys):
    data, grid = small_data(), sd.TimeGrid(0.05, 4)
    sim = simulate(sd.mlp(2, "relu"), data, grid, width=8, ensemble=3)
    assert isinstance(sim, SimResult)
    assert sim.f.shape == (3, 5, data.P_all) and sim.ntk.shape == (3, 5, data.P, data.P)
    assert set(sim.kernels) == {"K", "Phi1", "Phi2", "G1", "G2"}
    np.testing.assert_array_equal(sim.t, grid.t)
    ds = sim.to_xarray()
    assert ds["f"].dims == ("network", "t", "point") and ds["G2"].dims == ("network", "t", "i", "j")
    assert ds.attrs["kind"] == "simulation" and ds.attrs["width"] == 8 and ds.attrs["center"] == 0
    assert all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in ds.attrs.values())
    assert np.isnan(ds["y"].values[data.P:]).all()
    assert capsys.readouterr().err == ""  # progress=None, stderr not a terminal: silent
