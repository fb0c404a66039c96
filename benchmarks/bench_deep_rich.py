"""Deep rich regime (issue 4): time and memory peak, measured in one run.

1. tanh, L = 3, P = 4 training points (D = 4), T = 50 steps (eta = 0.1, gamma0 = 1): the
   infinite-width sampling solver (``sd.solve`` -> ``deep.solve_rich``) at 4096 and 8192
   sites; time and peak resident memory of a fresh process each.
2. Deep linear, same sizes: the closed-form saddle (``deep.linear_rich``).
3. The dense deep-linear propagator (``deep.linear_propagator``, response fluctuations
   included) on growing small problems, L = 2, P = 1: its Hessian has (4L - 1) n^2 rows,
   n = (T+1) P_all, so time grows like n^6; extrapolated to L = 3, P = 4, T = 50 it is out of
   reach. The matrix-free propagator (``deep.linear_matrix_free``: adjoint passes through
   the causal frontier, products with the Hessian) on the same small problems (the ratio,
   same numbers to 1e-15) and at L = 3, P = 4, T = 50 (N Cov f at all 204 x 204 step-point
   pairs, N Var of the NTK at every step and of the 6 layer kernels at 11 steps: 1374
   observables).
4. The dense propagator of deep nonlinear nets (``deep.propagator``: the action's Hessian from
   site averages, third-order source jets per site), tanh L = 2, P = 1, 4096 sites per layer,
   on growing n = steps + 1: the site jets cost ~(2n)^5 per site, the dense solve
   ((6L - 1) n^2 rows) ~n^6.
5. The O(1/N) mean correction of deep linear nets (``deep.linear_bias``): one product with
   the matrix-free Hessian operator per shifted point against the dense blocks rebuilt there
   (``reference=True``), then the sizes ``sd.solve(bias=True)`` takes
   (``python benchmarks/bench_deep_rich.py linear-bias``).
6. The O(1/N) mean correction of deep tanh nets (``deep.nonlinear_bias``) against the dense
   propagator on the same sites (``python benchmarks/bench_deep_rich.py tanh-bias``).
7. The matrix-free reference for deep nonlinear nets (``deep.nonlinear_matrix_free``) against
   the dense propagator on the same sites (``python benchmarks/bench_deep_rich.py
   tanh-matrix-free``), and one observable by its accumulating sweep up to L = 3, P = 4,
   T = 50 (``python benchmarks/bench_deep_rich.py tanh-sweep``).

Run: ``python benchmarks/bench_deep_rich.py``. Nothing here is asserted in tests.
"""
import multiprocessing as mp
import resource
import time

import numpy as np


def _case(kind, L, P, T, samples, queue):
    import symdmft as sd
    rng = np.random.default_rng(0)
    data = sd.Data(rng.standard_normal((P, 4)), np.sin(rng.standard_normal(P)))
    grid = sd.TimeGrid(0.1, T)
    t0 = time.perf_counter()
    if kind == "tanh":
        sd.solve(sd.mlp(L, "tanh", 1.0), data, grid, samples=samples)
    elif kind == "linear":
        sd.deep.solve_linear_rich(sd.mlp(L, "linear", 1.0), data, grid)
    elif kind == "matrix-free":
        from symdmft.deep.linear_matrix_free import solve_linear_matrix_free
        solve_linear_matrix_free(sd.mlp(L, "linear", 1.0), data, grid)
    elif kind in ("bias", "bias-dense"):
        sd.deep.linear_mean_correction(sd.mlp(L, "linear", 1.0), data, grid, reference=kind == "bias-dense")
    elif kind in ("tanh-bias", "tanh-bias-propagator"):
        from symdmft.deep.nonlinear_bias import nonlinear_mean_correction
        from symdmft.deep.propagator import solve_deep_propagator
        from symdmft.deep.rich import solve_rich_sampled
        net, grid = sd.mlp(L, "tanh", 1.5), sd.TimeGrid(0.2, T)   # eta gamma0 = 0.3
        if P == 1:                                # x.x/D = 1, y = 1: its pivots stay >= 1e-4 for 3 steps
            data = sd.Data(np.ones((1, 4)), np.array([1.0]))
        saddle = solve_rich_sampled(net, data, grid, samples=8192)
        t0 = time.perf_counter()                  # the correction (or the propagator) alone
        if kind == "tanh-bias":
            nonlinear_mean_correction(net, data, grid, saddle, samples=samples)
        else:
            solve_deep_propagator(net, data, grid, saddle, samples=samples)
    elif kind in ("tanh-propagator", "tanh-matrix-free"):
        from symdmft.deep.nonlinear_matrix_free import solve_nonlinear_matrix_free
        from symdmft.deep.propagator import solve_deep_propagator
        from symdmft.deep.rich import solve_rich_sampled
        net = sd.mlp(L, "tanh", 1.0)
        saddle = solve_rich_sampled(net, data, grid, samples=8192)
        t0 = time.perf_counter()                  # the propagator alone
        solve = solve_deep_propagator if kind == "tanh-propagator" else solve_nonlinear_matrix_free
        solve(net, data, grid, saddle, samples=samples)
    elif kind == "tanh-sweep":
        from symdmft.deep.nonlinear_matrix_free import NonlinearOperator
        from symdmft.deep.nonlinear_sweep import Sweep
        from symdmft.deep.rich import solve_rich_sampled
        from symdmft.runtime.samplers import make_rule
        from threadpoolctl import threadpool_limits
        net = sd.mlp(L, "tanh", 1.0)
        saddle = solve_rich_sampled(net, data, grid, samples=8192)
        t0 = time.perf_counter()                  # N Var f(T) at the first point alone
        with threadpool_limits(1):
            op = NonlinearOperator(net, saddle, grid, P, lambda l, dim: make_rule(dim, samples, 7919 * l, "qmc"))
            c = op.zeros()
            c["f"][T * P] = 1.0
            var = op.kappa([Sweep(op).backward(c)])[0, 0]
        print(f"  N Var f(T) = {var:.4f}")
    else:
        sd.deep.solve_linear_propagator(sd.mlp(L, "linear", 1.0), data, grid)
    seconds = time.perf_counter() - t0
    queue.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20))


def measure(*args):
    """(seconds, peak RSS in GiB) of one case in a fresh process (compilation excluded: the
    Numba cache is warm after the first case)."""
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_case, args=(*args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main():
    measure("tanh", 2, 1, 2, 512)     # warm the Numba cache
    for samples in (4096, 8192):
        s, gib = measure("tanh", 3, 4, 50, samples)
        print(f"tanh L = 3, P = 4, T = 50, {samples} sites: {s:.1f} s, peak {gib:.2f} GiB")
    s, gib = measure("linear", 3, 4, 50, 0)
    print(f"deep linear closed form, L = 3, P = 4, T = 50: {s:.2f} s, peak {gib:.2f} GiB")
    times = []
    for T in (5, 9, 13, 19):
        s, gib = measure("dense", 2, 1, T, 0)
        n = T + 1
        times.append((n, s))
        print(f"dense propagator L = 2, P = 1, T = {T} ({7 * n * n} rows): {s:.2f} s, peak {gib:.2f} GiB")
        m, _ = measure("matrix-free", 2, 1, T, 0)
        print(f"  matrix-free, same problem: {m:.3f} s (dense / matrix-free = {s / m:.0f})")
    (n1, s1), (n2, s2) = times[-2:]
    slope = np.log(s2 / s1) / np.log(n2 / n1)
    s, gib = measure("matrix-free", 3, 4, 50, 0)
    print(f"matrix-free propagator, deep linear L = 3, P = 4, T = 50: {s:.1f} s, peak {gib:.2f} GiB")
    rows = 11 * (51 * 4) ** 2
    print(f"time ~ n^{slope:.1f} over the last two sizes; L = 3, P = 4, T = 50 would have {rows} rows "
          f"(a dense Hessian of {rows ** 2 * 8 / 2**40:.0f} TiB)")
    tanh_propagator()


def tanh_propagator():
    times = []
    for T in (3, 5, 7, 9, 11, 15):
        s, gib = measure("tanh-propagator", 2, 1, T, 4096)
        times.append((T + 1, s))
        print(f"tanh propagator L = 2, P = 1, T = {T} (n = {T + 1}), 4096 sites: {s:.1f} s, peak {gib:.2f} GiB")
    (n1, s1), (n2, s2) = times[-2:]
    print(f"time ~ n^{np.log(s2 / s1) / np.log(n2 / n1):.1f} over the last two sizes")


def tanh_matrix_free():
    """The matrix-free reference for tanh (``deep.nonlinear_matrix_free``) against the dense
    propagator on the same sites (same numbers to rounding): one layer VJP per frontier group
    and observable, (steps + 1)(2L + 1) per observable, each O(sites n^3)."""
    for L, P, T in ((2, 1, 3), (2, 1, 5), (2, 1, 7), (3, 1, 3), (2, 2, 2)):
        d, _ = measure("tanh-propagator", L, P, T, 1024)
        m, gib = measure("tanh-matrix-free", L, P, T, 1024)
        print(f"tanh L = {L}, P = {P}, T = {T} (n = {(T + 1) * P}), 1024 sites: dense {d:.2f} s, "
              f"matrix-free reference {m:.1f} s, peak {gib:.2f} GiB (ratio {m / d:.0f})")


def tanh_sweep():
    """One observable (N Var f at the last step, first point) by the accumulating sweep
    (``deep.nonlinear_sweep``), tanh L = 3, P = 4, 512 sites per layer, growing T up to the
    issue's 50: O(T P n^2) per site, memory three (2n)^2 arrays per layer and site."""
    for T in (5, 11, 23, 50):
        s, gib = measure("tanh-sweep", 3, 4, T, 512)
        print(f"tanh sweep L = 3, P = 4, T = {T} (n = {(T + 1) * 4}), 512 sites, one observable: "
              f"{s:.1f} s, peak {gib:.2f} GiB")


def linear_propagators():
    for T in (5, 9, 13):
        s, _ = measure("dense", 2, 1, T, 0)
        m, _ = measure("matrix-free", 2, 1, T, 0)
        print(f"L = 2, P = 1, T = {T}: dense {s:.2f} s, matrix-free {m:.3f} s (ratio {s / m:.0f})")
    s, gib = measure("matrix-free", 3, 4, 50, 0)
    print(f"matrix-free propagator, deep linear L = 3, P = 4, T = 50: {s:.1f} s, peak {gib:.2f} GiB")


def linear_bias():
    """The deep linear mean correction: products with the matrix-free operator at the shifted
    points against the dense blocks rebuilt there (same numbers to 1e-10), then larger sizes."""
    for L, P, T in ((2, 1, 6), (2, 1, 9), (3, 1, 7)):
        d, _ = measure("bias-dense", L, P, T, 0)
        o, _ = measure("bias", L, P, T, 0)
        print(f"bias L = {L}, P = {P}, T = {T} (n = {(T + 1) * P}): dense blocks {d:.1f} s, "
              f"operator {o:.2f} s (ratio {d / o:.0f})")
    for L, P, T in ((3, 2, 9), (3, 4, 5)):
        o, gib = measure("bias", L, P, T, 0)
        print(f"bias L = {L}, P = {P}, T = {T} (n = {(T + 1) * P}): operator {o:.1f} s, peak {gib:.2f} GiB")


def tanh_bias():
    """The deep tanh mean correction (``deep.nonlinear_bias``, 4096 sites per layer) against the
    propagator on the same sites: the correction rebuilds one or two layers' Hessians about
    4 |q'| times (two shifts per coordinate, |q'| ~ (4L - 1) n^2). Problems whose source
    covariances are too close to singular are refused (``nonlinear_bias.PIVOT_MIN``), which is
    why the one-point cases use x.x/D = 1, y = 1 (a random point with y = sin(.) is refused
    from 2 steps on)."""
    for L, P, T in ((2, 1, 1), (2, 1, 2), (2, 1, 3), (3, 1, 2), (2, 2, 1)):
        b, gib = measure("tanh-bias", L, P, T, 4096)
        p, _ = measure("tanh-bias-propagator", L, P, T, 4096)
        print(f"tanh bias L = {L}, P = {P}, T = {T} (n = {(T + 1) * P}): {b:.1f} s, peak {gib:.2f} GiB; "
              f"the propagator {p:.2f} s (ratio {b / p:.0f})")


if __name__ == "__main__":
    import sys
    sections = {"propagator": tanh_propagator, "tanh-matrix-free": tanh_matrix_free, "tanh-sweep": tanh_sweep,
                "linear-propagator": linear_propagators,
                "linear-bias": linear_bias, "tanh-bias": tanh_bias}
    sections.get(sys.argv[1] if sys.argv[1:] else "", main)()
