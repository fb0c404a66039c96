"""The command line (symdmft.cli) and NetCDF results (symdmft.io), end to end on tiny problems.

Problems are the embedded default (3 train + 1 test points, D = 4) with 5 steps; theory with
512 quadrature samples, simulations of 50 width-64 networks: enough to exercise every path,
far too small for statistical checks (those live in the theory-vs-simulation tests).
"""
import os
import socket
import sys

import numpy as np
import pytest
import xarray as xr

import symdmft as sd
from symdmft import io
from symdmft.cli import main
from symdmft.observables.compare import compare, variance_with_error

PROBLEM = ["--activation", "tanh", "--gamma0", "1.0", "--eta", "0.05", "--steps", "5"]
SOLVE = ["solve", *PROBLEM, "--samples", "512"]
SIMULATE = ["simulate", *PROBLEM, "--width", "64", "--ensemble", "50"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A theory file and a simulation file of the same problem, written by the command line."""
    d = tmp_path_factory.mktemp("runs")
    run, sim = d / "run.nc", d / "sim.nc"
    assert main([*SOLVE, "--out", str(run)]) == 0
    assert main([*SIMULATE, "--out", str(sim)]) == 0
    return run, sim


def test_solve_prints_summary_and_round_trips(files, capsys, tmp_path):
    out = tmp_path / "sub" / "run.nc"   # missing folders are created
    assert main([*SOLVE, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for phrase in ("final train loss", "N Var f(t=0.25) per point", "N Var K trace", f"wrote {out}"):
        assert phrase in text
    ds = io.load(out)
    ref = sd.solve(sd.mlp(activation="tanh", gamma0=1.0), sd.default_data(), sd.TimeGrid(0.05, 5),
                   samples=512).to_xarray()
    for name in ref.data_vars:   # the same seed reproduces the run; the file keeps every bit
        np.testing.assert_array_equal(ds[name].values, ref[name].values)
    # the default problem carries its test point's target (used only by the test loss)
    np.testing.assert_array_equal(ds["y"].values, sd.default_data().y_all)
    for key, value in ref.attrs.items():
        assert ds.attrs[key] == value
    assert ds.attrs["kind"] == "theory" and ds.attrs["data_source"] == "default"
    assert ds.attrs["command"].startswith("symdmft solve --activation tanh")
    assert set(io.provenance()) - {"created_utc"} <= set(ds.attrs)


def test_simulate_file(files):
    ds = io.load(files[1])
    assert ds.attrs["kind"] == "simulation" and ds.attrs["width"] == 64
    assert ds["f"].shape == (50, 6, 4) and ds["ntk"].shape == (50, 6, 3, 3)
    assert ds.attrs["data_sha256"] == io.load(files[0]).attrs["data_sha256"]


def test_compare_table_and_plot(files, capsys, tmp_path):
    png = tmp_path / "compare.png"
    run, sim = map(str, files)
    assert main(["compare", run, sim, "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "N Var f, point 3" in text and "N Var K_ii, i 2" in text and "max |z|" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["compare.png"]
    assert main(["compare", sim, run]) == 0   # either order: files are told apart by kind


def test_compare_arithmetic(files):
    theory, sim = io.load(files[0]), io.load(files[1])
    cmp = compare(theory, sim)
    N, E = 64, 50
    f = sim["f"].values
    np.testing.assert_allclose(cmp["f_mean_sim"], f.mean(0))
    np.testing.assert_allclose(cmp["f_var_sim"], N * f.var(0, ddof=1))
    np.testing.assert_allclose(cmp["ntk_var_sim"], N * np.diagonal(sim["ntk"].values, 0, 2, 3).var(0, ddof=1))
    np.testing.assert_allclose(cmp["ntk_var_theory"], np.diagonal(theory["ntk_var"].values, 0, 1, 2))
    np.testing.assert_array_equal(cmp["f_var_theory"], theory["f_var"])
    z = (cmp["f_var_sim"] - cmp["f_var_theory"]) / cmp["f_var_sim_se"]
    np.testing.assert_allclose(cmp["f_var_z"], z)
    assert cmp.attrs["ensemble"] == E


def test_variance_standard_error_is_gaussian_value():
    """For Gaussian samples se = s^2 sqrt(2/E) (THEORY.md §5); E = 4000 draws give the
    m4 estimate ~5% relative noise (sd of m4/s^4 is sqrt(96/E)/3), so 20% is > 3 sigma."""
    x = np.random.default_rng(0).normal(scale=2.0, size=(4000, 3))
    var, se = variance_with_error(x)
    np.testing.assert_allclose(se, var * np.sqrt(2 / 4000), rtol=0.2)


def test_compare_refuses_different_problems(files, tmp_path, capsys):
    other = tmp_path / "g.nc"
    assert main(["simulate", *PROBLEM[:2], "--gamma0", "0.5", *PROBLEM[4:], "--width", "64",
                 "--ensemble", "10", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["compare", str(files[0]), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("symdmft: error:") and "gamma0" in err

    data = sd.default_data()   # same shapes, other targets: only the data hash tells
    npz = tmp_path / "d.npz"
    np.savez(npz, X=data.X, y=data.y + 1.0, X_test=data.X_test)
    assert main([*SIMULATE[:-1], "10", "--data", str(npz), "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["compare", str(files[0]), str(other)]) == 2
    assert "data_sha256" in capsys.readouterr().err

    assert main(["compare", str(files[0]), str(files[0])]) == 2
    assert main(["compare", str(files[0]), str(tmp_path / "missing.nc")]) == 2
    assert "missing.nc" in capsys.readouterr().err


def test_load_rejects_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such result file"):
        io.load(tmp_path / "none.nc")
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(foreign, engine="h5netcdf")
    with pytest.raises(ValueError, match="not a symdmft result"):
        io.load(foreign)
    text = tmp_path / "text.nc"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable NetCDF"):
        io.load(text)


def test_atomic_save_keeps_old_file(files, tmp_path, monkeypatch):
    path = tmp_path / "run.nc"
    good = io.load(files[0])
    io.save(good, path)
    before = path.read_bytes()
    bad = good.copy(deep=True)
    bad["f_var"][2, 1] = np.nan
    with pytest.raises(ValueError, match="'f_var'"):
        io.save(bad, path)

    def crash(self, target, **kw):   # a failure half-way through writing the temp file
        with open(target, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(xr.Dataset, "to_netcdf", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save(good, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.nc"]
    monkeypatch.undo()
    fresh = good.copy()
    fresh.attrs = {"kind": "theory"}
    io.save(fresh, tmp_path / "fresh.nc")
    assert fresh.attrs == {"kind": "theory"}   # save annotates a copy
    assert "symdmft_version" in io.load(tmp_path / "fresh.nc").attrs


def test_netcdf_attrs_and_provenance():
    attrs = io.netcdf_attrs({"a": True, "b": np.float32(0.5), "c": np.int64(3), "d": None,
                             "e": (1, 2), "f": "x", "g": 2.0})
    assert attrs == {"a": 1, "b": 0.5, "c": 3, "d": "None", "e": "(1, 2)", "f": "x", "g": 2.0}
    assert type(attrs["c"]) is int and type(attrs["b"]) is float
    prov = io.provenance()
    assert prov["symdmft_version"] == sd.__version__ and prov["created_utc"].endswith("+00:00")
    assert all(socket.gethostname() not in str(v) for v in prov.values())


@pytest.mark.parametrize("args, name", [
    (["simulate", "--width", "0"], "width"),
    (["simulate", "--ensemble", "0"], "ensemble"),
    (["solve", "--eta", "-1"], "eta"),
    (["solve", "--eta", "nan"], "eta"),
    (["solve", "--steps", "0"], "steps"),
    (["solve", "--samples", "0"], "samples"),
    (["solve", "--gamma0", "0"], "gamma0"),
    (["solve", "--seed", "-1"], "seed"),
    (["solve", "--sampler", "grid"], "sampler"),
    (["solve", "--activation", "foo(h"], "activation"),
    (["simulate", "--activation", "h + a*h**3"], "activation"),
])
def test_bad_input_is_one_line_exit_2_before_compiling(args, name, tmp_path, capsys, monkeypatch):
    def compiled(*a, **k):
        raise AssertionError("compiled before checking the inputs")
    # the modules, not the functions their packages re-export under the same names
    monkeypatch.setattr(sys.modules["symdmft.runtime.solve"], "load", compiled)
    monkeypatch.setattr(sys.modules["symdmft.simulate.ensemble"].NetworkBatch, "initialise", compiled)
    out = tmp_path / "x.nc"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("symdmft: error:") and err.count("\n") == 1 and name in err
    assert not out.exists()


def test_bad_data_files(tmp_path, capsys):
    X = np.random.default_rng(0).standard_normal((3, 2))
    cases = {"nan.npz": dict(X=np.where(X == X[0, 0], np.nan, X), y=np.ones(3)),
             "short.npz": dict(X=X, y=np.ones(2)),
             "nokey.npz": dict(X=X),
             "dim.npz": dict(X=X, y=np.ones(3), X_test=np.ones((1, 3)))}
    words = {"nan.npz": "X contains NaN", "short.npz": "y has 2 targets", "nokey.npz": "lacks array(s) y",
             "dim.npz": "X_test"}
    for fname, arrays in cases.items():
        np.savez(tmp_path / fname, **arrays)
        assert main(["simulate", "--data", str(tmp_path / fname), "--out", str(tmp_path / "x.nc")]) == 2
        err = capsys.readouterr().err
        assert words[fname] in err and fname in err
    assert main(["solve", "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "x.nc")]) == 2


def test_custom_data_and_divergence(tmp_path, capsys):
    X = np.random.default_rng(0).standard_normal((2, 3))
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0.5, -0.5]))
    out = tmp_path / "s.nc"
    assert main(["simulate", "--data", str(tmp_path / "d.npz"), "--steps", "3", "--width", "16",
                 "--ensemble", "4", "--out", str(out)]) == 0
    ds = io.load(out)
    assert ds["f"].shape == (4, 4, 2) and ds.attrs["P_test"] == 0
    capsys.readouterr()
    bad = tmp_path / "diverged.nc"
    assert main(["simulate", "--activation", "linear", "--eta", "5", "--steps", "30", "--width", "16",
                 "--ensemble", "4", "--out", str(bad)]) == 1
    assert "diverged at step" in capsys.readouterr().err
    assert not bad.exists()


def test_generate_and_derive_delegate(monkeypatch, capsys, tmp_path):
    import symdmft.codegen.generate as gen
    report = [(tmp_path / "a.py", False), (tmp_path / "b.py", True)]
    monkeypatch.setattr(gen, "generate_builtin", lambda check=False: report)
    assert main(["generate", "--check"]) == 1
    assert "stale: " + str(tmp_path / "b.py") in capsys.readouterr().out
    assert main(["generate"]) == 0
    report[1] = (tmp_path / "b.py", False)
    assert main(["generate", "--check"]) == 0

    class Eqs:
        def __str__(self):
            return "plain equations"

        def latex(self):
            return r"\text{latex}"
    monkeypatch.setattr(sd, "derive", lambda net: Eqs(), raising=False)
    assert main(["derive", "--activation", "erf"]) == 0
    assert "plain equations" in capsys.readouterr().out
    assert main(["derive", "--latex"]) == 0
    assert r"\text{latex}" in capsys.readouterr().out


def test_help_and_usage_errors(capsys):
    assert main(["--help"]) == 0
    assert main([]) == 2
    assert main(["solve", "--steps", "1.5", "--out", "x.nc"]) == 2   # argparse: invalid int


def test_compile_guard_is_live(tmp_path, monkeypatch):
    """Positive control for the guard above: a valid solve does reach the compiler."""
    def compiled(*a, **k):
        raise AssertionError("compiled")
    monkeypatch.setattr(sys.modules["symdmft.runtime.solve"], "load", compiled)
    with pytest.raises(AssertionError, match="compiled"):
        main([*SOLVE, "--out", str(tmp_path / "x.nc")])


def test_scipy_engine_fallback(files, tmp_path, monkeypatch):
    """Without h5netcdf/h5py, save writes NetCDF3 through scipy; values and attrs survive."""
    monkeypatch.setattr(io, "_engine", lambda: "scipy")
    for src in files:
        ds = io.load(src)
        io.save(ds, tmp_path / "nc3.nc")
        back = io.load(tmp_path / "nc3.nc")
        for name in ds.data_vars:
            np.testing.assert_array_equal(back[name].values, ds[name].values)
        assert back.attrs["kind"] == ds.attrs["kind"] and back.attrs["gamma0"] == ds.attrs["gamma0"]


def test_deep_nets_through_the_command_line(tmp_path, capsys):
    """hidden_layers = 2, tanh: a small problem (one input, 3 steps) gets its finite-width theory
    and compares with a simulation file; the default problem (too large for the dense
    propagator) is still solved and saved, and the output says why N Var is missing."""
    one = tmp_path / "one.npz"
    np.savez(one, X=np.ones((1, 4)), y=np.array([1.0]))
    deep = ["--hidden-layers", "2", "--activation", "tanh", "--eta", "0.1", "--steps", "3"]
    run, sim = tmp_path / "deep.nc", tmp_path / "deep_sim.nc"
    assert main(["solve", *deep, "--data", str(one), "--samples", "1024", "--out", str(run)]) == 0
    assert "N Var f(t=0.3) per point" in capsys.readouterr().out
    assert main(["simulate", *deep, "--data", str(one), "--width", "64", "--ensemble", "50",
                 "--out", str(sim)]) == 0
    ds = io.load(run)
    assert ds["f_var"].shape == (4, 1) and ds["Phi2_2t"].shape == (4, 1, 4, 1)
    cmp = compare(ds, io.load(sim))
    assert np.all(np.isfinite(cmp["f_var_z"].values))
    big = tmp_path / "big.nc"
    assert main(["solve", *deep, "--samples", "512", "--out", str(big)]) == 0
    assert "no finite-width theory: (steps+1) P_all = 16 > 12" in capsys.readouterr().out
    assert "f_var" not in io.load(big)


def test_deep_linear_net_through_the_command_line(tmp_path, capsys):
    """hidden_layers = 3, linear, the default data, 12 steps (a dense Hessian of 24,000 rows):
    the closed form and the matrix-free propagator give N Var f and of the NTK, the header
    names the closed form (no samples), and the file holds the variances: f and the NTK at
    every step, the layers' kernels at the 11 steps computed (13 steps > 11)."""
    out = tmp_path / "lin.nc"
    args = ["--hidden-layers", "3", "--activation", "linear", "--eta", "0.05", "--steps", "12"]
    assert main(["solve", *args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "deep linear closed form" in text and "N Var K trace at t=0.6" in text
    ds = io.load(out)
    assert np.all(np.isfinite(ds["f_var"].values))
    assert np.all(np.isfinite(ds["ntk_var"].values)) and ds["ntk_var"].shape == (13, 3, 3)
    assert ds["Phi2_var"].shape == (11, 3, 3) and ds["t_kernel"].values[-1] == ds["t"].values[-1]
    assert not (tmp_path / "lin.nc.partial.npz").exists()        # progress file gone once saved
    small = tmp_path / "bias.nc"
    assert main(["solve", *args[:4], "--eta", "0.1", "--steps", "2", "--bias", "--out", str(small)]) == 0
    assert "N (E f - f_inf)(t=0.2) per point" in capsys.readouterr().out
    assert io.load(small)["ntk_bias"].shape == (3, 3, 3)
