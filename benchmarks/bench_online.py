"""Speed of the online-learning theory (symdmft.online), as ratios measured in one run.

Problem of examples/online_learning.py (tanh, D = 2, 6 x 6 Gauss-Hermite population,
gamma0 = 1, eta = 0.5, 16 steps).

1. The expansion's cost grows like M^2 (M particles): warm solve_online at M = 1024 and 2048.
2. Theory vs simulation at equal accuracy for the O(1/N) coefficient of the expected loss
   at t = 4: the theory's error is estimated by the change from M = 1024 to 2048; a
   simulation estimates the coefficient from two widths (32, 128), whose standard error
   falls like 1/sqrt(E); the ensemble size that matches the theory's error is extrapolated
   from a measured run.

Run: ``python benchmarks/bench_online.py``. Nothing here is asserted in tests.
"""
import time

import numpy as np

import symdmft as sd
from symdmft.online import Population, Teacher, solve_online
from symdmft.simulate import simulate_online


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main():
    pop = Population.gaussian(2, Teacher("tanh", (1.0, 0.5), 2.0), order=6)
    net, grid = sd.mlp(activation="tanh", gamma0=1.0), sd.TimeGrid(0.5, 16)
    solve_online(net, pop, sd.TimeGrid(0.5, 1), samples=64, expansion_samples=64)   # compile
    th1, t1 = timed(lambda: solve_online(net, pop, grid, expansion_samples=1024))
    th2, t2 = timed(lambda: solve_online(net, pop, grid, expansion_samples=2048))
    k = 8                                                                  # t = 4
    err = abs(th2.loss_bias[k] - th1.loss_bias[k]) / abs(th2.loss_bias[k])
    print(f"solve_online M = 1024: {t1:.2f} s, M = 2048: {t2:.2f} s (ratio {t2 / t1:.2f}; M^2: 4)")
    print(f"theory N (E L - L_inf) at t = 4: {th2.loss_bias[k]:.5f}, relative change "
          f"1024 -> 2048 particles: {err:.2e}")
    E = 4000
    (s1, ts1), (s2, ts2) = (timed(lambda N=N: simulate_online(net, pop, grid, N, E, seed=N))
                            for N in (32, 128))
    scale = 1 / 32 - 1 / 128
    se = np.sqrt(s1.loss[:, k].var() / E + s2.loss[:, k].var() / E) / scale
    rel_se = se / abs(th2.loss_bias[k])
    E_needed = E * (rel_se / err) ** 2
    t_sim = (ts1 + ts2) * E_needed / E
    print(f"simulation, two widths, E = {E} each: {ts1 + ts2:.1f} s, relative se {rel_se:.3f}")
    print(f"equal accuracy ({err:.1e}) needs E = {E_needed:.3g} per width: ~{t_sim:.0f} s, "
          f"{t_sim / t2:.0f}x the theory (M = 2048)")


if __name__ == "__main__":
    main()
