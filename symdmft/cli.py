"""The ``symdmft`` command: solve, simulate, compare, generate, derive, sweep, plot.

Every input is checked by the library's constructors (``sd.mlp``, ``sd.Data``, ``sd.TimeGrid``,
the first lines of ``solve`` / ``simulate``) before anything is compiled or trained; a bad one
ends the command with ``symdmft: error: <message>`` and exit status 2, a diverged run with
status 1.
"""
from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
from pathlib import Path

import numpy as np

EXIT_USAGE, EXIT_FAILURE = 2, 1


def _add_problem(parser: argparse.ArgumentParser, out: bool = True) -> None:
    g = parser.add_argument_group("problem (THEORY.md §1)")
    g.add_argument("--activation", default="tanh",
                   help="built-in name (tanh, erf, relu, linear, softplus, sin) or a SymPy expression in h")
    g.add_argument("--hidden-layers", type=int, default=1, help="hidden layers L (default 1)")
    g.add_argument("--gamma0", type=float, default=1.0, help="feature-learning strength > 0")
    g.add_argument("--center", action="store_true", help="train f(t) - f(0) (initial network frozen)")
    if not out:
        return
    g.add_argument("--eta", type=float, default=0.05, help="gradient-descent step; t_k = k eta")
    g.add_argument("--steps", type=int, default=60, help="number of steps")
    g.add_argument("--data", metavar="FILE.npz",
                   help="arrays X (P, D), y (P,), optional X_test and y_test; default: the embedded problem")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", required=True, metavar="FILE.nc", help="NetCDF file to write")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symdmft", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("solve", help="infinite-width dynamics and N Var of predictions and kernels")
    _add_problem(p)
    p.add_argument("--samples", type=int, default=40_000, help="quadrature points of the sources")
    p.add_argument("--sampler", default="auto")
    p.add_argument("--backend", default="numba")
    p.add_argument("--bias", action="store_true",
                   help="add the O(1/N) mean corrections N (E f - f_inf), N (E K - K_inf)")
    p.set_defaults(handler=_solve)

    p = sub.add_parser("simulate", help="train an ensemble of finite-width networks")
    _add_problem(p)
    p.add_argument("--width", type=int, default=512, help="hidden width N")
    p.add_argument("--ensemble", type=int, default=2000, help="number of networks E")
    p.add_argument("--chunk", type=int, default=None, help="networks trained together")
    p.set_defaults(handler=_simulate)

    p = sub.add_parser("compare", help="theory file against simulation file (THEORY.md §5)")
    p.add_argument("files", nargs=2, metavar="FILE.nc", help="a solve result and a simulate result")
    p.add_argument("--plot", metavar="FILE.png", help="write a three-panel figure")
    p.set_defaults(handler=_compare)

    p = sub.add_parser("generate", help="rewrite the committed solver modules in generated/")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    p.set_defaults(handler=_generate)

    p = sub.add_parser("derive", help="print the saddle-point and Hessian equations")
    _add_problem(p, out=False)
    p.add_argument("--latex", action="store_true")
    p.set_defaults(handler=_derive)
    _add_sweep(sub)
    _add_plot(sub)
    return parser


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="theory and simulations over a grid of parameters, on Dask")
    p.add_argument("spec", metavar="SWEEP.toml", help="base problem and axes (see symdmft.sweep.spec)")
    p.add_argument("--scheduler", metavar="ADDRESS|synchronous",
                   help="a Dask scheduler address, or 'synchronous' (serial, no cluster); "
                        "default: a local cluster sized to the machine")
    p.add_argument("--workers", type=int, help="local-cluster worker processes (default: CPU count)")
    p.add_argument("--out", metavar="FILE.nc", help="results (default: SWEEP.nc); points kept in FILE.nc.points/")
    p.add_argument("--retry-failed", action="store_true", help="recompute points that failed before")
    p.add_argument("--threads", type=int, help="Numba threads per task (default: CPUs / workers on "
                   "a local cluster); equal values give bit-identical serial and cluster results")
    p.set_defaults(handler=_sweep)


def _sweep(args) -> int:
    from .sweep import sweep
    ds = sweep(args.spec, scheduler=args.scheduler, workers=args.workers, out=args.out,
               retry_failed=args.retry_failed, threads=args.threads)
    a = ds.attrs
    print(f"sweep over {a['axes'] or 'no axes'} ({a['compute']}): {a['points']} points, "
          f"{a['points_computed']} computed, {a['points_reused']} reused, {a['points_failed']} failed")
    for name in ("theory_error", "sim_error"):
        if name in ds:
            for idx, msg in np.ndenumerate(ds[name].values):
                if msg:
                    where = ", ".join(f"{d}={ds[d].values[i]}" for d, i in zip(ds[name].dims, idx))
                    print(f"failed {name.split('_')[0]} point {where or '(base)'}: {msg}")
    print(f"wrote {args.out or Path(args.spec).with_suffix('.nc')}")
    return 0


def _add_plot(sub) -> None:
    from .plot_sweep import KINDS, QUANTITIES
    p = sub.add_parser("plot", help="standard figures of a sweep results file")
    p.add_argument("file", metavar="RESULTS.nc")
    p.add_argument("--kind", choices=KINDS, default="compare",
                   help="time: quantity vs t; compare: theory vs simulation (±1 se); axis: quantity vs --axis")
    p.add_argument("--quantity", choices=tuple(QUANTITIES), default="f_var")
    p.add_argument("--point", type=int, default=0, help="data point (train then test index)")
    p.add_argument("--axis", help="the swept axis of --kind axis (default: the first)")
    p.add_argument("--step", type=int, default=-1, help="time step of --kind axis (default: the last)")
    p.add_argument("--sel", action="append", metavar="AXIS=VALUE", help="fix a swept axis (repeatable)")
    p.add_argument("--out", required=True, metavar="FIG.png")
    p.set_defaults(handler=_plot)


def _plot(args) -> int:
    from .plot_sweep import parse_sel, plot_sweep
    from .sweep import load_results
    try:
        ds = load_results(args.file)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
    plot_sweep(ds, args.out, kind=args.kind, quantity=args.quantity, point=args.point,
               axis=args.axis, step=args.step, sel=parse_sel(ds, args.sel))
    print(f"wrote {args.out}")
    return 0


def _net(args):
    import symdmft as sd
    return sd.mlp(hidden_layers=args.hidden_layers, activation=args.activation,
                  gamma0=args.gamma0, center=args.center)


def load_data(path):
    """``(sd.Data, source)``: the embedded default problem, or the arrays of an .npz file."""
    import symdmft as sd
    if path is None:
        return sd.default_data(), "default"
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--data: no such file {path}")
    try:
        npz = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"--data {path} is not a readable .npz file ({err})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"--data {path} must be an .npz archive holding arrays X and y")
    with npz:
        missing = [k for k in ("X", "y") if k not in npz.files]
        if missing:
            raise ValueError(f"--data {path} lacks array(s) {', '.join(missing)} (has {npz.files})")
        try:
            X_test = npz["X_test"] if "X_test" in npz.files else None
            y_test = npz["y_test"] if "y_test" in npz.files else None
            return sd.Data(npz["X"], npz["y"], X_test=X_test, y_test=y_test), str(p)
        except (ValueError, TypeError) as err:
            raise ValueError(f"--data {path}: {err}") from None


def data_hash(data) -> str:
    """SHA-256 of the inputs and targets: two files with equal hashes saw the same data."""
    digest = hashlib.sha256()
    for arr in (data.X, data.y, data.X_test if data.X_test is not None else np.empty((0, data.D)),
                data.y_test if data.y_test is not None else np.empty(0)):
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        digest.update(repr(arr.shape).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _problem(args):
    """Network, data and grid, all validated (nothing compiled yet)."""
    import symdmft as sd
    net = _net(args)
    grid = sd.TimeGrid(eta=args.eta, steps=args.steps)
    data, source = load_data(args.data)
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a directory")
    return net, data, grid, {"data_source": source, "data_sha256": data_hash(data)}


def _save(dataset, args, extra: dict) -> None:
    from .io import save
    dataset.attrs.update(extra, command=args.command_line)
    save(dataset, args.out)
    print(f"wrote {args.out}")


def _fmt_points(values) -> str:
    return ", ".join(f"{v:.5g}" for v in values)


def _solve(args) -> int:
    import symdmft as sd
    net, data, grid, extra = _problem(args)
    checkpoint = partial_path(args.out)
    res = sd.solve(net, data, grid, samples=args.samples, seed=args.seed, sampler=args.sampler,
                   backend=args.backend, bias=args.bias, checkpoint=checkpoint)
    p = res.params
    if "resumed_from" in p:
        print(f"resumed from {p['resumed_from']} (the parts an interrupted run had finished)")
    how = f"samples={p['samples']} ({p['sampler']})" if "samples" in p else p.get("solver", "closed form")
    print(f"theory: {p['activation']}, gamma0={net.gamma0:g}, eta={grid.eta:g}, steps={grid.steps} "
          f"(t = {res.t[-1]:g}), P={data.P} train + {data.P_all - data.P} test, {how}")
    print(f"final train loss 1/2|y - f|^2: {0.5 * np.sum(res.delta[-1] ** 2):.6g}")
    if getattr(res, "f_cov", None) is None:      # a deep nonlinear net too large for its propagator
        print(f"no finite-width theory: {p.get('fluctuations')}")
    else:
        print(f"N Var f(t={res.t[-1]:g}) per point: {_fmt_points(res.f_var[-1])}")
        print(f"N Var K trace at t={res.t[-1]:g}: {np.trace(res.ntk_var[-1]):.6g}")
    if args.bias:
        print(f"N (E f - f_inf)(t={res.t[-1]:g}) per point: {_fmt_points(res.f_bias[-1])}")
    _save(res.to_xarray(), args, extra)
    checkpoint.unlink(missing_ok=True)                  # the result is safe: progress no longer needed
    return 0


def partial_path(out) -> Path:
    """Where ``symdmft solve --out FILE`` keeps a long run's progress: FILE.partial.npz, next to
    FILE; a rerun of the same command resumes from it, and it is deleted once FILE is written."""
    return Path(f"{out}.partial.npz")


def _simulate(args) -> int:
    import symdmft as sd
    net, data, grid, extra = _problem(args)
    sim = sd.simulate(net, data, grid, width=args.width, ensemble=args.ensemble, seed=args.seed,
                      chunk=args.chunk)
    N, E, t = args.width, args.ensemble, sim.t[-1]
    loss = 0.5 * np.sum((data.y - sim.f[:, -1, :data.P]) ** 2, axis=1)
    ddof = 1 if E > 1 else 0
    k_diag = np.diagonal(sim.ntk[:, -1], axis1=1, axis2=2)
    print(f"simulation: {net.activation_name}, gamma0={net.gamma0:g}, eta={grid.eta:g}, "
          f"steps={grid.steps} (t = {t:g}), width N={N}, ensemble E={E}")
    print(f"final train loss 1/2|y - f|^2, ensemble mean: {loss.mean():.6g}")
    print(f"N Var f(t={t:g}) per point: {_fmt_points(N * sim.f[:, -1].var(axis=0, ddof=ddof))}")
    print(f"N Var K trace at t={t:g}: {N * k_diag.var(axis=0, ddof=ddof).sum():.6g}")
    _save(sim.to_xarray(), args, extra)
    return 0


def _table_rows(cmp, times):
    names = {"f_mean": ("mean f", "point"), "f_var": ("N Var f", "point"), "ntk_var": ("N Var K_ii", "i")}
    for q, (label, dim) in names.items():
        for n in cmp[dim].values:
            yield f"{label}, {dim} {n}"
            yield f"{'t':>8} {'theory':>12} {'simulation':>12}   {'se':>10} {'z':>7}"
            for k in times:
                sel = {"t": k, dim: n}
                th, sim, se, z = (float(cmp[f"{q}{s}"].isel(sel)) for s in ("_theory", "_sim", "_sim_se", "_z"))
                yield f"{float(cmp.t[k]):8.4g} {th:12.6g} {sim:12.6g} ± {se:10.3g} {z:7.2f}"


def _compare(args) -> int:
    from .io import load
    from .observables.compare import QUANTITIES, compare
    datasets = []
    for path in args.files:
        try:
            datasets.append(load(path))
        except FileNotFoundError as err:
            raise ValueError(str(err)) from None
    kinds = sorted(ds.attrs["kind"] for ds in datasets)
    if kinds != ["simulation", "theory"]:
        raise ValueError(f"compare needs one theory file and one simulation file, got kinds {kinds}")
    theory, sim = sorted(datasets, key=lambda ds: ds.attrs["kind"] != "theory")
    cmp = compare(theory, sim)
    a = cmp.attrs
    print(f"{a['activation']}, gamma0={a['gamma0']:g}, eta={a['eta']:g}, steps={a['steps']}, "
          f"center={a['center']}: theory vs N={a['width']}, E={a['ensemble']} networks "
          f"(se: one standard error of the ensemble estimate; z = (simulation - theory) / se)")
    times = np.unique(np.linspace(0, cmp.sizes["t"] - 1, 6).round().astype(int))
    for line in _table_rows(cmp, times):
        print(line)
    for q in QUANTITIES:
        z = np.abs(cmp[f"{q}_z"].values)
        worst = f"{np.nanmax(z):.2f}" if np.isfinite(z).any() else "n/a"
        print(f"max |z| over all times, {q}: {worst}")
    if args.plot:
        from .plot import plot_comparison
        plot_comparison(cmp, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _generate(args) -> int:
    from .codegen.generate import generate_builtin
    stale_any = False
    for item in generate_builtin(check=args.check):
        path, stale = item if isinstance(item, tuple) else (item, True)
        stale_any |= bool(stale)
        if args.check:
            print(f"{'stale' if stale else 'up to date'}: {path}")
        else:
            print(f"{'wrote' if stale else 'unchanged'}: {path}")
    return EXIT_FAILURE if args.check and stale_any else 0


def _derive(args) -> int:
    net = _net(args)
    try:
        from symdmft import derive
    except ImportError as err:
        print(f"symdmft: error: derive is not available ({err})", file=sys.stderr)
        return EXIT_FAILURE
    eqs = derive(net)
    print(eqs.latex() if args.latex else str(eqs))
    return 0


def _error(message) -> None:
    print("symdmft: error: " + " ".join(str(message).split()), file=sys.stderr)


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # argparse has printed usage and its message (or --help)
        return done.code if isinstance(done.code, int) else 0
    args.command_line = shlex.join(["symdmft", *argv])
    try:
        return args.handler(args)
    except (ValueError, NotImplementedError) as err:
        _error(err)
        return EXIT_USAGE
    except FloatingPointError as err:
        _error(err)
        return EXIT_FAILURE
    except OSError as err:
        _error(err)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
