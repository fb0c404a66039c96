"""``sd.sweep``: run every point of a sweep on Dask, keep each as it finishes (issue 7).

Schedulers: None (default) starts an embedded ``distributed.LocalCluster`` sized to the machine
(one single-threaded worker process per core); an address (``tcp://host:8786``) connects to
a running cluster, e.g. one started by dask-jobqueue on SLURM; ``"synchronous"`` runs every
task in this process, one after another, with no cluster (and without Dask installed).

Local worker processes inherit this process's environment, and ``SYMDMFT_CACHE_DIR`` is set in
each of them to the cache directory this process uses, so every worker reads the same
generated modules. Each worker process loads (and, the first time on a machine, Numba-compiles)
the solver module of an activation once, so a worker's first point is slower than the rest.
Remote workers use their own environment: set ``SYMDMFT_CACHE_DIR`` there. One thread per
worker process is best: each solve already runs its propagator on Numba's threads (``threads``
sets how many), and several solves launching thread teams at once oversubscribe the cores.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..progress import show_progress
from . import tasks
from .spec import load_spec
from .store import PointStore, assemble, write_results

SYNCHRONOUS = "synchronous"


def sweep(spec, scheduler=None, workers=None, out=None, progress=None, retry_failed=False,
          threads=None, on_point=None):
    """Run the sweep ``spec`` (a TOML path, a dict of its contents, or a ``SweepSpec``).

    out: the results file (``.nc``, or ``.zarr`` if zarr is installed); default the TOML path
    with suffix ``.nc``; None for a dict spec keeps nothing on disk. Finished points go to
    ``<out>.points/`` as they complete; a rerun reuses them (failed ones too, unless
    ``retry_failed``). workers: local-cluster size (default: the CPU count). threads: Numba
    threads per task (default: CPUs / workers on a local cluster, unchanged otherwise); equal
    values make synchronous and cluster results bit-identical. progress: a tqdm bar of points
    (None: only on a terminal). on_point(point, dataset): called after each point is saved.
    Returns the assembled ``xarray.Dataset`` (also written to ``out``).
    """
    spec_path = spec if isinstance(spec, (str, Path)) else None
    spec = load_spec(spec)
    if out is None and spec_path is not None:
        out = Path(spec_path).with_suffix(".nc")
    out = None if out is None else _check_out(Path(out))
    workers, threads = _check_count("workers", workers), _check_count("threads", threads)
    if scheduler is not None and not (isinstance(scheduler, str) and scheduler):
        raise ValueError(f"scheduler must be a Dask address or {SYNCHRONOUS!r}, got {scheduler!r}")
    store = PointStore(out)
    points = spec.points()
    results = {}
    for p in points:
        ds = store.load(p)
        if ds is not None and (not retry_failed or not ds.attrs.get("error")):
            results[p.key] = ds
    todo = [p for p in points if p.key not in results]
    started = time.perf_counter()
    if todo:
        bar = _progress_bar(len(points), len(points) - len(todo), progress)
        try:
            def keep(point, ds):
                results[point.key] = store.save(point, ds)
                bar.update(1)
                if on_point is not None:
                    on_point(point, results[point.key])
            if scheduler == SYNCHRONOUS:
                _run_serial(todo, spec.data, threads, keep)
            else:
                _run_dask(todo, spec.data, scheduler, workers, threads, keep)
        finally:
            bar.close()
    failed = sum(bool(results[p.key].attrs.get("error")) for p in points)
    attrs = {"kind": "sweep", "spec": spec.to_json(), "compute": ",".join(spec.compute),
             "axes": ",".join(spec.axes), "data_source": spec.data_source,
             "data_sha256": spec.data_sha256, "points": len(points), "points_failed": failed,
             "points_computed": len(todo), "points_reused": len(points) - len(todo),
             "scheduler": str(scheduler or "local"), "wall_seconds": time.perf_counter() - started,
             "chunk": spec.base["chunk"]}
    dataset = assemble(spec, results, attrs)
    if out is not None:
        write_results(dataset, out)
    return dataset


def _check_out(out: Path) -> Path:
    if out.suffix not in (".nc", ".zarr"):
        raise ValueError(f"out must end in .nc (NetCDF) or .zarr, got {out}")
    if out.suffix == ".zarr":
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise ValueError(f"out {out}: Zarr output needs the zarr package (pip install zarr); "
                             "use a .nc file") from None
    elif out.is_dir():
        raise ValueError(f"out {out} is a directory")
    return out


def _check_count(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _progress_bar(total, done, progress):
    from tqdm import tqdm
    show = show_progress(progress)
    return tqdm(total=total, initial=done, unit="point", desc="sweep", disable=not show)


def _run_serial(todo, data, threads, keep):
    for point in todo:
        if point.kind == "theory":
            keep(point, tasks.run_theory(point, data, threads))
        else:
            keep(point, tasks.run_sim_serial(point, data))


def _client(scheduler, workers):
    """``(client, cluster)``: a new local cluster (closed by the caller) or a connection."""
    import dask
    from distributed import Client, LocalCluster

    from ..codegen.cache import cache_dir
    if scheduler is not None:
        try:
            return Client(scheduler, timeout="30s"), None
        except (OSError, TimeoutError) as err:
            raise OSError(f"cannot reach the Dask scheduler {scheduler!r}: {err}") from None
    env = {"SYMDMFT_CACHE_DIR": str(cache_dir())}  # this process's cache, set in every worker
    # Distributed sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which pins glibc's mmap
    # threshold: every NumPy temporary over 128 kB is then mmap'ed and page-faulted afresh,
    # and the simulator ran 2.1x slower (6.6 s vs 3.1 s, 2000 width-512 networks). Leave it
    # unset, and give this process its environment back (the nanny writes it before spawning).
    saved = dict(os.environ)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                   processes=True, dashboard_address=None, env=env)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return Client(cluster), cluster


def _run_dask(todo, data, scheduler, workers, threads, keep):
    from distributed import as_completed

    client, cluster = _client(scheduler, workers)
    try:
        if threads is None and cluster is not None:
            threads = max(1, (os.cpu_count() or 1) // len(cluster.workers))
        data_f = client.scatter(data, broadcast=True)
        owner, futures = {}, []
        for p in todo:
            if p.kind == "theory":
                fut = client.submit(tasks.run_theory, p, data_f, threads, key=f"theory-{p.key}")
            else:
                n = len(tasks.chunk_bounds(p.get("ensemble"), p.get("chunk")))
                parts = [client.submit(tasks.run_sim_chunk, p, data_f, c, key=f"chunk-{c}-{p.key}")
                         for c in range(n)]
                fut = client.submit(tasks.finish_sim, p, data_f, *parts, key=f"sim-{p.key}")
            owner[fut.key] = p
            futures.append(fut)
        for fut in as_completed(futures):
            point = owner[fut.key]
            if fut.status == "finished":
                keep(point, fut.result())
            else:  # the task itself never raises; this is a lost worker or a cancellation
                keep(point, tasks.error_dataset(point, fut.exception()))
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

