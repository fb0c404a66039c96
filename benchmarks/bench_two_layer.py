"""Speed of the two-layer pipeline, as ratios measured in one run (issue: two-layer).

1. Warm (compiled) ``sd.solve`` for tanh, P = 2, 60 steps, 40 000 samples: generated
   Numba module vs the NumPy reference backend on the same samples.
2. Theory vs simulation at equal accuracy: the theory's sampling error of N Var f(T)
   (spread over independent Sobol scramblings) and the ensemble size a simulation needs
   for the same relative error (``sqrt(2/E)``), timed by extrapolating a measured ensemble.

Run: ``python benchmarks/bench_two_layer.py``. Nothing here is asserted in tests.
"""
import time

import numba
import numpy as np

import symdmft as sd


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def propagator_times(net, data, grid, samples):
    """Time only the generated ``propagate`` of each backend on identical inputs."""
    from symdmft.codegen.cache import load
    from symdmft.lower import lower
    from symdmft.model.site import TwoLayerSite
    from symdmft.runtime.samplers import covariance_root, make_rule
    from symdmft.runtime.solve import propagate
    lowered = lower(TwoLayerSite(net))
    rule = make_rule(data.P_all + 1, samples, 0)
    h0 = np.ascontiguousarray(rule.zeta[:, :data.P_all] @ covariance_root(data.Kx_all).T)
    w0 = np.ascontiguousarray(rule.zeta[:, data.P_all])
    kx = np.ascontiguousarray(data.Kx)
    times = {}
    for backend in ("numba", "numpy"):
        module = load(lowered, net.activation_name, backend)
        H, W, f, _, _ = module.forward(h0, w0, rule.weights, data.y, kx, grid.eta, net.gamma0,
                                       grid.steps, net.center)
        ACT = module.site_activations(H)
        delta = np.ascontiguousarray(data.y[None, :] - f[:, :data.P])
        args = (H, W, ACT, rule.weights, delta, kx, grid.eta, net.gamma0)
        threads = numba.get_num_threads() if backend == "numba" else 1
        times[backend] = timed(lambda: propagate(module, args, threads))[1]
    return times


def main(samples=40_000, steps=60, eta=0.05, width=512, seeds=4):
    base = sd.default_data()
    data = sd.Data(base.X[:2], base.y[:2])
    net = sd.mlp(activation="tanh", gamma0=1.0)
    grid = sd.TimeGrid(eta=eta, steps=steps)
    solve = lambda backend, seed=0: sd.solve(net, data, grid, samples=samples, seed=seed,  # noqa: E731
                                             backend=backend)
    _, cold = timed(lambda: solve("numba"))
    res, warm = timed(lambda: solve("numba"))
    ref, numpy_time = timed(lambda: solve("numpy"))
    agree = np.abs(res.f_cov - ref.f_cov).max()
    print(f"problem: tanh, gamma0 = 1, P = 2, {steps} steps, eta = {eta}, "
          f"{res.params['samples']} samples ({res.params['sampler']})")
    print(f"sd.solve numba  : {warm:8.2f} s warm ({cold:.1f} s first call, compiling or loading)")
    print(f"sd.solve numpy  : {numpy_time:8.2f} s")
    print(f"speed-up        : {numpy_time / warm:8.1f} x   (max |f_cov difference| = {agree:.1e})")
    kernel_times = propagator_times(net, data, grid, samples)
    print("propagator kernel alone (the generated code; the rest is shared NumPy/BLAS): "
          f"numba {kernel_times['numba']:.2f} s, numpy {kernel_times['numpy']:.2f} s, "
          f"{kernel_times['numpy'] / kernel_times['numba']:.1f} x")

    # theory's own sampling error at the last time, from independent scramblings
    vals = np.array([sd.solve(net, data, grid, samples=samples, seed=s, sampler="qmc").f_var[-1]
                     for s in range(seeds)])
    rel = float(np.max(vals.std(axis=0, ddof=1) / np.abs(vals.mean(axis=0))))
    E_needed = int(np.ceil(2 / rel ** 2))
    E0 = 2000
    _, sim_time = timed(lambda: sd.simulate(net, data, grid, width=width, ensemble=E0, seed=0))
    sim_needed = sim_time * E_needed / E0
    qmc_time = timed(lambda: sd.solve(net, data, grid, samples=samples, seed=0, sampler="qmc"))[1]
    print(f"theory rel. error of N Var f(T) (QMC, {seeds} scramblings): {rel:.1e}")
    print(f"simulation (N = {width}) needs E = {E_needed:,} networks for that accuracy: "
          f"{sim_time:.2f} s per {E0} -> {sim_needed:,.0f} s, "
          f"{sim_needed / qmc_time:,.0f} x the theory's {qmc_time:.2f} s")


if __name__ == "__main__":
    main()
