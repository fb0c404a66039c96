"""Wall time of a 16-point sweep, serial vs a 2-worker local Dask cluster (issue 7, Speed).

The sweep: the default problem of the command line (tanh, embedded data, eta = 0.05, 60 steps),
gamma0 in 4 values x seed in 2 values, theory (8 points, 40 000 quadrature samples) and
simulation (8 points, 2000 networks of width 512 in chunks of 500, so each is 4 tasks). Both runs write their point files and the
results file, as a real sweep does. Serial: ``scheduler="synchronous"`` with Numba's default
threads (all cores for each solve). Cluster: 2 worker processes, one Numba thread each; the
cluster's start-up (and each worker's loading of the solver modules) is part of its wall time
and also shown apart. The generated modules are compiled once beforehand, so neither run pays
for compilation. Both runs give the same results up to the propagator's summation order.

Run: ``python benchmarks/bench_sweep.py``. Nothing here is asserted.
"""
import tempfile
import time
from pathlib import Path

import numpy as np

import symdmft as sd

SPEC = {"compute": ["theory", "simulation"],
        "base": {"activation": "tanh", "steps": 60, "samples": 40_000, "width": 512,
                 "ensemble": 2000, "chunk": 500},
        "axes": {"gamma0": [0.25, 0.5, 1.0, 2.0], "seed": [0, 1]}}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def cluster_start(workers=2):
    from distributed import Client, LocalCluster
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("symdmft").solve)  # workers import the package
        return time.perf_counter() - t0


def main(workers=2):
    sd.solve(sd.mlp(activation="tanh"), sd.default_data(), sd.TimeGrid(0.05, 2), samples=64)
    with tempfile.TemporaryDirectory() as tmp:
        serial, t_serial = timed(lambda: sd.sweep(SPEC, scheduler="synchronous",
                                                  out=Path(tmp) / "serial.nc", progress=False))
        cluster, t_cluster = timed(lambda: sd.sweep(SPEC, workers=workers,
                                                    out=Path(tmp) / "cluster.nc", progress=False))
    start = cluster_start(workers)
    n = serial.attrs["points"]
    diff = max(float(np.nanmax(np.abs(serial[v] - cluster[v]))) for v in ("f_var", "sim_f_var"))
    th, sim = float(serial["theory_seconds"].sum()), float(serial["sim_seconds"].sum())
    th_c, sim_c = float(cluster["theory_seconds"].sum()), float(cluster["sim_seconds"].sum())
    print(f"sweep: {n} points (8 theory, 8 simulation of 4 chunks), tanh, 60 steps")
    print(f"serial (synchronous)    : {t_serial:7.2f} s   (theory {th:.2f} s, simulation {sim:.2f} s)")
    print(f"local cluster, {workers} workers: {t_cluster:7.2f} s   "
          f"(theory {th_c:.2f} s, simulation {sim_c:.2f} s of task time over {workers} workers;\n"
          f"{'':26}starting a cluster and importing symdmft takes about {start:.1f} s)")
    print(f"serial / cluster        : {t_serial / t_cluster:7.2f} x   "
          f"(excluding start-up: {t_serial / max(t_cluster - start, 1e-9):.2f} x)")
    print(f"max |difference| of N Var f, serial vs cluster: {diff:.1e}")


if __name__ == "__main__":
    main()
