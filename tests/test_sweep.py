"""Parameter sweeps (issue 7): spec validation, Dask cluster vs serial, failed points, resume, plots.

Problems are tiny (embedded default data, 5 steps, 256 quadrature samples, 40 networks of
width 32 in chunks of 20): these tests check the machinery, not the physics. Every numerical
comparison is exact equality: the same seeds and the same number of Numba threads per task
(``threads=1``) reproduce every bit, whatever process runs a task; a different thread count
would change the propagator's summation order (differences of 2e-16) and is not used here.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symdmft as sd
from symdmft.cli import main
from symdmft.sweep import load_results, load_spec, store, tasks

BASE = {"activation": "tanh", "steps": 5, "samples": 256, "width": 32, "ensemble": 40, "chunk": 20}
NUMERIC = ("f", "f_var", "ntk", "ntk_var", "sim_f_mean", "sim_f_mean_se", "sim_f_var",
           "sim_f_var_se", "sim_ntk_mean", "sim_ntk_var", "sim_ntk_var_se")


def write_toml(path: Path, base: dict, axes: dict, compute=("theory", "simulation")) -> Path:
    def value(v):
        return json.dumps(v)  # JSON scalars and lists of numbers/strings/bools are valid TOML
    lines = [f"compute = {value(list(compute))}", "[base]"]
    lines += [f"{k} = {value(v)}" for k, v in base.items()]
    lines += ["[axes]"] + [f"{k} = {value(v)}" for k, v in axes.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_same_numbers(a, b):
    for name in NUMERIC + ("theory_error", "sim_error"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


@pytest.mark.parametrize("raw, key", [
    ({"base": {"gama0": 1.0}}, "base.gama0"),
    ({"axes": {"gamma0": [1.0, -2.0]}}, "axes.gamma0[1]"),
    ({"axes": {"P": [1, 4]}}, "axes.P[1]"),
    ({"axes": {"activation": ["tanh", "tanh(x)"]}}, "axes.activation[1]"),
    ({"axes": {"width": []}}, "axes.width"),
    ({"axes": {"eta": [0.1, 0.1]}}, "axes.eta"),
    ({"base": {"ensemble": 1}}, "base.ensemble"),
    ({"base": {"seed": -1}}, "base.seed"),
    ({"base": {"center": 1}}, "base.center"),
    ({"base": {"data": "missing.npz"}}, "base.data"),
    ({"compute": ["theory", "training"]}, "compute"),
    ({"axes": {"chunk": [10, 20]}}, "axes.chunk"),
])
def test_spec_errors_name_the_key(raw, key, tmp_path):
    """Every mistake is reported with its key before anything runs (no file is written)."""
    with pytest.raises(ValueError, match="sweep spec") as err:
        sd.sweep(raw, out=tmp_path / "r.nc", scheduler="synchronous")
    assert key in str(err.value)
    assert not any(tmp_path.iterdir())


def test_points_split_by_what_they_depend_on():
    """Width does not multiply the theory points, samples not the simulations; keys differ."""
    spec = load_spec({"base": BASE, "axes": {"gamma0": [0.5, 1.0], "width": [32, 64, 128]}})
    points = spec.points()
    assert [p.kind for p in points].count("theory") == 2
    assert [p.kind for p in points].count("simulation") == 6
    assert len({p.key for p in points}) == 8


def test_local_cluster_two_processes_equals_synchronous_cli(tmp_path):
    """A 2-process LocalCluster and ``--scheduler synchronous`` give the same bits; the sweep's
    numbers are those of ``sd.solve`` and of the documented per-chunk ``sd.simulate`` seeds.

    The serial run goes first so that, after generated/ has changed, Numba compiles the module
    once here and the workers load it from the on-disk cache (about 9 s warm; a cold cache
    costs a compilation of 20-60 s on this 2-core machine)."""
    toml = write_toml(tmp_path / "sweep.toml", BASE, {"gamma0": [0.5, 1.0], "seed": [0, 1]})
    assert main(["sweep", str(toml), "--scheduler", "synchronous", "--threads", "1",
                 "--out", str(tmp_path / "serial.nc")]) == 0
    serial = load_results(tmp_path / "serial.nc")
    environ = dict(os.environ)
    cluster = sd.sweep(toml, workers=2, threads=1, out=tmp_path / "cluster.nc", progress=False)
    assert dict(os.environ) == environ   # the nanny's pre-spawn variables do not leak into ours
    assert cluster.attrs["scheduler"] == "local" and cluster.attrs["points_failed"] == 0
    assert cluster.attrs["points_computed"] == 8   # its own folder: nothing reused from serial
    assert_same_numbers(cluster, serial)
    assert_same_numbers(load_results(tmp_path / "cluster.nc"), cluster)   # the file keeps every bit
    assert cluster["f_var"].dims == ("gamma0", "seed", "step", "point")

    net, data, grid = sd.mlp(activation="tanh", gamma0=0.5), sd.default_data(), sd.TimeGrid(0.05, 5)
    with tasks.numba_threads(1):
        res = sd.solve(net, data, grid, samples=256, seed=0)
    at = {"gamma0": 0.5, "seed": 0}
    np.testing.assert_array_equal(cluster["f_var"].sel(at).values, res.f_var)
    np.testing.assert_array_equal(cluster["ntk_var"].sel(at).values, res.ntk_var)
    parts = [sd.simulate(net, data, grid, width=32, ensemble=20, seed=tasks.chunk_seed(0, c, 2)).f
             for c in range(2)]
    var, se = tasks.variance_with_error(np.concatenate(parts))
    np.testing.assert_array_equal(cluster["sim_f_var"].sel(at).values, 32 * var)
    np.testing.assert_array_equal(cluster["sim_f_var_se"].sel(at).values, 32 * se)


def test_existing_scheduler_address(tmp_path):
    """``scheduler=ADDRESS`` connects to a running cluster (here an in-process one: threads, not
    processes, only to keep this test at a second; the process path is tested above)."""
    from distributed import LocalCluster
    spec = {"base": BASE, "axes": {"gamma0": [0.5, 1.0]}}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        ds = sd.sweep(spec, scheduler=cluster.scheduler_address, threads=1, out=tmp_path / "r.nc")
    assert ds.attrs["scheduler"] == cluster.scheduler_address and ds.attrs["points_failed"] == 0
    assert_same_numbers(ds, sd.sweep(spec, scheduler="synchronous", threads=1))
    assert len(list((tmp_path / "r.nc.points").glob("*.nc"))) == 4


def test_one_chunk_equals_simulate():
    """A point that fits in one chunk uses the point's seed itself: it is ``sd.simulate``."""
    ds = sd.sweep({"compute": ["simulation"], "base": dict(BASE, chunk=40, seed=3)},
                  scheduler="synchronous")
    sim = sd.simulate(sd.mlp(activation="tanh"), sd.default_data(), sd.TimeGrid(0.05, 5),
                      width=32, ensemble=40, seed=3)
    np.testing.assert_array_equal(ds["sim_f_mean"].values, sim.f.mean(axis=0))


def test_failed_points_are_recorded_and_the_rest_succeed(tmp_path, capsys):
    """eta=1000 (a linear net diverges) fails alone; hidden_layers=2 (deep linear) has its
    finite-width theory (the matrix-free propagator) and succeeds."""
    base = dict(BASE, activation="linear")
    toml = write_toml(tmp_path / "s.toml", base, {"hidden_layers": [1, 2], "eta": [0.05, 1000.0]})
    assert main(["sweep", str(toml), "--scheduler", "synchronous"]) == 0
    ds = load_results(tmp_path / "s.nc")
    text = capsys.readouterr().out
    err = ds["theory_error"]
    assert err.sel(hidden_layers=1, eta=0.05).item() == ""
    assert err.sel(hidden_layers=2, eta=0.05).item() == ""
    assert "diverged" in err.sel(hidden_layers=1, eta=1000.0).item()
    assert ds["sim_error"].sel(hidden_layers=2, eta=0.05).item() == ""   # the simulator is deep
    assert "diverged" in ds["sim_error"].sel(hidden_layers=2, eta=1000.0).item()
    for L in (1, 2):
        assert np.isfinite(ds["f_var"].sel(hidden_layers=L, eta=0.05)).all()
        assert np.isfinite(ds["ntk_var"].sel(hidden_layers=L, eta=0.05)).all()
    assert np.isnan(ds["f_var"].sel(eta=1000.0)).all()
    assert np.isfinite(ds["sim_f_var"].sel(hidden_layers=2, eta=0.05)).all()
    assert ds.attrs["points_failed"] == 4 and "failed theory point hidden_layers=2, eta=1000" in text
    assert "t" in ds.coords and ds["t"].dims == ("eta", "step")


def test_deep_point_without_finite_width_theory_fails_with_the_reason():
    """A deep tanh net with (steps+1) P_all = 24 > 12 has no propagator in sd.solve: its theory
    point is recorded as NotImplementedError with solve's reason, the means are not kept."""
    ds = sd.sweep({"compute": ["theory"], "base": dict(BASE, hidden_layers=2)}, scheduler="synchronous")
    err = ds["theory_error"].item()
    assert err.startswith("NotImplementedError") and "24 > 12" in err
    assert np.isnan(ds["f_var"]).all()


def test_axes_of_different_sizes_are_padded_with_nan():
    """Sweeping P (first P training points) and steps: each point sits at its own positions of
    the full data's train-then-test index and of the step axis; the rest is NaN."""
    ds = sd.sweep({"base": BASE, "axes": {"P": [1, 3], "steps": [3, 5]}}, scheduler="synchronous",
                  threads=1)
    full = sd.default_data()
    sub = sd.Data(full.X[:1], full.y[:1], X_test=full.X_test, y_test=full.y_test)
    with tasks.numba_threads(1):
        res = sd.solve(sd.mlp(activation="tanh"), sub, sd.TimeGrid(0.05, 3), samples=256)
    at = ds["f_var"].sel(P=1, steps=3)
    np.testing.assert_array_equal(at.sel(step=[0, 1, 2, 3], point=[0, 3]).values, res.f_var)
    assert np.isnan(at.sel(point=[1, 2])).all() and np.isnan(at.sel(step=[4, 5])).all()
    np.testing.assert_array_equal(ds["ntk_var"].sel(P=1, steps=3, i=0, j=0).values[:4],
                                  res.ntk_var[:, 0, 0])
    assert np.isnan(ds["ntk_var"].sel(P=1, steps=3, i=1)).all()
    assert np.isfinite(ds["sim_f_var"].sel(P=3, steps=5)).all()
    np.testing.assert_array_equal(ds["y"].values, full.y_all)


KILLER = """
import os, signal, sys
import symdmft as sd
done = []
def stop(point, ds):
    done.append(point.key)
    if len(done) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)   # no cleanup, no finally blocks: a real kill
sd.sweep(sys.argv[1], scheduler="synchronous", threads=1, on_point=stop, progress=False)
"""


def test_resume_after_kill_recomputes_nothing_finished(tmp_path, monkeypatch):
    """Kill a sweep after 3 of 8 points; the rerun computes exactly the other 5, leaves the 3
    files untouched, and gives the bits of an uninterrupted run. A third run computes nothing;
    a corrupted point file is recomputed, alone."""
    toml = write_toml(tmp_path / "s.toml", BASE, {"gamma0": [0.5, 1.0], "seed": [0, 1]})
    proc = subprocess.run([sys.executable, "-c", KILLER, str(toml), "3"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(Path(sd.__file__).parents[1])})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    folder = tmp_path / "s.nc.points"
    kept = {f.name: f.stat().st_mtime_ns for f in folder.glob("*.nc")}
    assert len(kept) == 3 and not (tmp_path / "s.nc").exists()

    computed = []
    for name in ("run_theory", "run_sim_chunk"):
        original = getattr(tasks, name)
        def counting(point, *args, _f=original):
            computed.append(point.key)
            return _f(point, *args)
        monkeypatch.setattr(tasks, name, counting)
    spec = load_spec(toml)
    resumed = sd.sweep(toml, scheduler="synchronous", threads=1)
    assert {f"{p.kind}-{p.key}.nc" for p in spec.points() if p.key in computed} \
        == {f"{p.kind}-{p.key}.nc" for p in spec.points()} - set(kept)
    assert {f: (folder / f).stat().st_mtime_ns for f in kept} == kept
    assert resumed.attrs["points_reused"] == 3 and resumed.attrs["points_computed"] == 5

    reference = sd.sweep(toml, scheduler="synchronous", threads=1, out=tmp_path / "ref.nc")
    assert_same_numbers(resumed, reference)

    computed.clear()
    again = sd.sweep(toml, scheduler="synchronous", threads=1)
    assert computed == [] and again.attrs["points_computed"] == 0
    assert_same_numbers(again, reference)

    victim = sorted(folder.glob("theory-*.nc"))[0]
    victim.write_bytes(b"not a netcdf file")
    sd.sweep(toml, scheduler="synchronous", threads=1)
    assert computed == [victim.name.split("-", 1)[1][:-3]]


def test_point_files_are_self_describing(tmp_path):
    """A point file names its parameters and key (so a user can read it without the sweep)."""
    ds = sd.sweep({"compute": ["theory"], "base": BASE, "axes": {"gamma0": [2.0]}},
                  out=tmp_path / "r.nc", scheduler="synchronous")
    (path,) = (tmp_path / "r.nc.points").glob("theory-*.nc")
    from symdmft import io
    point = io.load(path)
    assert json.loads(point.attrs["params"])["gamma0"] == 2.0
    assert path.name == f"theory-{point.attrs['key']}.nc"
    np.testing.assert_array_equal(point["f_var"].values, ds["f_var"].sel(gamma0=2.0).values)


def test_zarr_output_is_optional(tmp_path):
    """``.zarr`` works with zarr installed, and is refused before any work without it."""
    spec = {"compute": ["theory"], "base": BASE}
    try:
        import zarr  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="zarr"):
            sd.sweep(spec, out=tmp_path / "r.zarr", scheduler="synchronous")
        assert not any(tmp_path.iterdir())
        return
    ds = sd.sweep(spec, out=tmp_path / "r.zarr", scheduler="synchronous")
    np.testing.assert_array_equal(load_results(tmp_path / "r.zarr")["f_var"].values, ds["f_var"].values)


def test_plot_kinds_from_a_results_file(tmp_path, capsys):
    """Each figure kind is drawn from a file (including failed, NaN points); bad options are
    reported with their name."""
    toml = write_toml(tmp_path / "s.toml", BASE, {"activation": ["tanh", "linear"], "width": [32, 64],
                                                   "hidden_layers": [1, 2]})
    assert main(["sweep", str(toml), "--scheduler", "synchronous"]) == 0
    results = str(tmp_path / "s.nc")
    for kind, extra in (("time", ["--sel", "activation=linear"]), ("compare", ["--sel", "hidden_layers=1"]),
                        ("axis", ["--axis", "width", "--quantity", "ntk_var"])):
        png = tmp_path / f"{kind}.png"
        assert main(["plot", results, "--kind", kind, *extra, "--out", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", results, "--sel", "width=48", "--out", str(tmp_path / "x.png")]) == 2
    assert "width takes the values" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "s.nc.points" / next(iter(
        os.listdir(tmp_path / "s.nc.points")))), "--out", str(tmp_path / "y.png")]) == 2
    assert "not a symdmft sweep" in capsys.readouterr().err


def test_sweep_store_variables_cover_both_kinds():
    assert set(store.VARIABLES["theory"]) | set(store.VARIABLES["simulation"]) == set(NUMERIC)
