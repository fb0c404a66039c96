"""What a worker runs: a theory point, a chunk of a simulation, and the chunks' reduction (issue 7).

Every task catches its own exceptions and returns them as the point's ``error`` attribute, so a
failed point (a deep nonlinear net too large for its dense propagator: NotImplementedError
with the reason ``solve`` gives; a FloatingPointError when eta makes the dynamics diverge) is
recorded and the sweep goes on.

Simulations are split into chunks of ``chunk`` networks, each its own task, so one large ensemble
spreads over the workers. Chunk c of a point with seed s trains with the seed
``chunk_seed(s, c)`` (NumPy's SeedSequence hash of (s, c), 128 bits: disjoint streams for all
practical purposes); a point that fits in one chunk uses s itself, so it equals
``sd.simulate(..., seed=s)``. Results are therefore reproducible for a fixed ``chunk``; a
different chunking draws other (equally valid) networks.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from ..observables.compare import variance_with_error

SIM_VARIABLES = ("sim_f_mean", "sim_f_mean_se", "sim_f_var", "sim_f_var_se", "sim_ntk_mean",
                 "sim_ntk_var", "sim_ntk_var_se")
THEORY_VARIABLES = ("f", "f_var", "ntk", "ntk_var")
DIMS = {name: ("step", "i", "j") if "ntk" in name else ("step", "point")
        for name in THEORY_VARIABLES + SIM_VARIABLES}


def point_problem(point, data):
    """``(net, data, grid, point_index)``: the point's first-P data, and where its points sit in
    the full data's train-then-test index (the ``point`` coordinate of the sweep)."""
    import symdmft as sd

    P = point.get("P")
    net = sd.mlp(hidden_layers=point.get("hidden_layers"), activation=point.get("activation"),
                 gamma0=point.get("gamma0"), center=point.get("center"))
    sub = sd.Data(data.X[:P], data.y[:P], X_test=data.X_test, y_test=data.y_test)
    index = np.concatenate([np.arange(P), np.arange(data.P, data.P_all)])
    return net, sub, sd.TimeGrid(eta=point.get("eta"), steps=point.get("steps")), index


@contextmanager
def numba_threads(n):
    """Run with ``n`` Numba threads (None: leave as is). Fixing n makes serial and cluster runs
    bit-identical: the propagator's reductions are split by thread count (2e-16 differences)."""
    if not n:
        yield
        return
    import numba
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)


def error_dataset(point, err, seconds=0.0):
    import xarray as xr
    return xr.Dataset(attrs={"error": f"{type(err).__name__}: {err}", "seconds": float(seconds)})


def _coords(index, steps, P):
    return {"step": np.arange(steps + 1), "point": index, "i": np.arange(P), "j": np.arange(P)}


def run_theory(point, data, threads=None):
    """``sd.solve`` at one point: f, N Var f (t, point); NTK and N Var of its entries (t, i, j)."""
    import xarray as xr

    import symdmft as sd

    start = time.perf_counter()
    try:
        net, sub, grid, index = point_problem(point, data)
        with numba_threads(threads):
            res = sd.solve(net, sub, grid, samples=point.get("samples"), seed=point.get("seed"),
                           sampler=point.get("sampler"), backend=point.get("backend"))
        if getattr(res, "f_cov", None) is None:   # deep nets without a propagator: say why
            raise NotImplementedError(f"finite-width theory: {res.params.get('fluctuations')}")
        tp, tij = ("step", "point"), ("step", "i", "j")
        ds = xr.Dataset({"f": (tp, res.f), "f_var": (tp, res.f_var), "ntk": (tij, res.ntk),
                         "ntk_var": (tij, res.ntk_var)}, coords=_coords(index, grid.steps, sub.P))
    except Exception as err:  # recorded, not raised: the sweep continues
        return error_dataset(point, err, time.perf_counter() - start)
    ds.attrs.update(error="", seconds=time.perf_counter() - start,
                    sampler_used=res.params.get("sampler", "closed form"),
                    samples_used=res.params.get("samples", 0))
    return ds


def chunk_bounds(ensemble: int, chunk: int) -> list:
    return [(lo, min(ensemble, lo + chunk)) for lo in range(0, ensemble, chunk)]


def chunk_seed(seed: int, index: int, n_chunks: int) -> int:
    if n_chunks == 1:
        return seed
    words = np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(4, dtype=np.uint32)
    return int.from_bytes(words.tobytes(), "little")


def run_sim_chunk(point, data, index: int):
    """Train chunk ``index`` of the point's ensemble: ``{"f", "ntk", "seconds"}`` or ``{"error"}``."""
    import symdmft as sd

    start = time.perf_counter()
    bounds = chunk_bounds(point.get("ensemble"), point.get("chunk"))
    lo, hi = bounds[index]
    try:
        net, sub, grid, _ = point_problem(point, data)
        sim = sd.simulate(net, sub, grid, width=point.get("width"), ensemble=hi - lo,
                          seed=chunk_seed(point.get("seed"), index, len(bounds)), progress=False)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}", "seconds": time.perf_counter() - start}
    return {"f": sim.f, "ntk": sim.ntk, "seconds": time.perf_counter() - start}


def finish_sim(point, data, *chunks):
    """Concatenate the chunks; ensemble mean and N Var of f and of the NTK, with standard errors
    (``variance_with_error``: se of a variance sqrt((m4 - s^4) / E), THEORY.md §5)."""
    import xarray as xr

    seconds = sum(c["seconds"] for c in chunks)
    errors = [c["error"] for c in chunks if "error" in c]
    if errors:
        return xr.Dataset(attrs={"error": errors[0], "seconds": seconds})
    _, sub, grid, index = point_problem(point, data)
    f = np.concatenate([c["f"] for c in chunks])
    ntk = np.concatenate([c["ntk"] for c in chunks])
    N, E = point.get("width"), f.shape[0]
    f_var, f_var_se = variance_with_error(f)
    k_var, k_var_se = variance_with_error(ntk)
    tp, tij = ("step", "point"), ("step", "i", "j")
    values = {"sim_f_mean": (tp, f.mean(0)), "sim_f_mean_se": (tp, f.std(0, ddof=1) / np.sqrt(E)),
              "sim_f_var": (tp, N * f_var), "sim_f_var_se": (tp, N * f_var_se),
              "sim_ntk_mean": (tij, ntk.mean(0)), "sim_ntk_var": (tij, N * k_var),
              "sim_ntk_var_se": (tij, N * k_var_se)}
    ds = xr.Dataset(values, coords=_coords(index, grid.steps, sub.P))
    ds.attrs.update(error="", seconds=seconds, chunks=len(chunks))
    return ds


def run_sim_serial(point, data):
    """The whole simulation point in this process: the same chunks, in order."""
    n = len(chunk_bounds(point.get("ensemble"), point.get("chunk")))
    return finish_sim(point, data, *(run_sim_chunk(point, data, c) for c in range(n)))
