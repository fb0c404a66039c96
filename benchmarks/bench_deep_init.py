"""Speed of ``sd.initial_statistics`` for a deep net (issue 3): L = 4, P = 10, seconds not minutes.

For tanh, relu, erf and softplus at L = 4 on P = 10 inputs (D = 5, N(0, 1) entries):
the means alone (NNGP / NTK recursions and Price sensitivities), the full statistics
(four-point moments of every layer, noise responses and the N Var of every kernel), and
the largest dense array held, against the (P^2)^2 per-layer bound. The last line times a
simulated ensemble of the same net at t = 0 (E = 500, N = 256, whose N Var K carries a
~6% sampling error) for the ratio.

Run: ``python benchmarks/bench_deep_init.py``. Nothing here is asserted in tests.
"""
import time

import numpy as np

import symdmft as sd


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def largest_array(stats) -> int:
    sizes = [m.size for m in stats.means.values()]
    for per_layer in stats.response.values():
        sizes += [S.size for pair in per_layer.values() for S in pair]
    sizes += [noise.joint().size // 4 for noise in stats.kappa]
    return max(sizes)


def main(L=4, P=10, D=5):
    rng = np.random.default_rng(0)
    data = sd.Data(rng.standard_normal((P, D)), rng.standard_normal(P))
    print(f"L = {L}, P = {P}, D = {D}; bound (P^2)^2 = {P**4:,} entries per layer")
    theory_time = {}
    for activation in ("tanh", "relu", "erf", "softplus"):
        net = sd.mlp(hidden_layers=L, activation=activation)
        _, t_mean = timed(lambda: sd.initial_statistics(net, data, fluctuations=False))
        stats, t_full = timed(lambda: (lambda s: (s, s.var))(sd.initial_statistics(net, data))[0])
        theory_time[activation] = t_full
        print(f"{activation:>9}: means {t_mean:6.2f} s, full statistics {t_full:6.2f} s, "
              f"largest array {largest_array(stats):,} entries, "
              f"N Var K_00 = {stats.var['K'][0, 0]:.4g}")
    net = sd.mlp(hidden_layers=L, activation="tanh", gamma0=0.05, center=True)
    _, t_sim = timed(lambda: sd.simulate(net, data, sd.TimeGrid(0.1, 1), width=256, ensemble=500,
                                         seed=0, progress=False))
    print(f"simulated ensemble at t = 0 (tanh, N = 256, E = 500): {t_sim:.2f} s, "
          f"{t_sim / theory_time['tanh']:.1f} x the theory's {theory_time['tanh']:.2f} s")


if __name__ == "__main__":
    main()
