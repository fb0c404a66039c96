"""The standard figures of a sweep results file (issue 7, item 3; THEORY.md §5).

kinds: ``time`` (a quantity against t, one curve per point of the swept axes), ``compare``
(theory lines against the simulated ensembles' estimates, ±1 standard error) and ``axis`` (a
quantity at one time step against a swept axis, theory and simulation). Quantities:
``f_var`` (N Var f_mu(t)), ``ntk_var`` (N Var K_mumu(t)), ``f`` (the mean prediction) for
data point ``point``. ``sel`` fixes axes ({"gamma0": 1.0}) to keep a figure readable.
"""
from __future__ import annotations

import itertools

import numpy as np

from .plot import _marker_index, save_figure

KINDS = ("time", "compare", "axis")
QUANTITIES = {"f_var": ("f_var", "sim_f_var", "N Var f(t)"),
              "ntk_var": ("ntk_var", "sim_ntk_var", "N Var K(t)"),
              "f": ("f", "sim_f_mean", "mean f(t)")}
MAX_CURVES = 12


def parse_sel(ds, items) -> dict:
    """``["gamma0=1.0", ...]`` -> {axis: value}, each value cast to its coordinate's type."""
    out = {}
    for item in items or ():
        name, eq, text = item.partition("=")
        if not eq or name not in ds.coords or name in ("step", "point", "i", "j", "t"):
            swept = [d for d in ds.dims if d not in ("step", "point", "i", "j")]
            raise ValueError(f"--sel {item!r}: expected AXIS=VALUE with AXIS one of {swept}")
        kind = ds[name].dtype.kind
        try:
            value = {"f": float, "i": int, "b": lambda s: s.lower() in ("1", "true")}.get(kind, str)(text)
        except ValueError:
            raise ValueError(f"--sel {item!r}: {text!r} is not a value of {name}") from None
        if value not in ds[name].values.tolist():
            raise ValueError(f"--sel {item!r}: {name} takes the values {ds[name].values.tolist()}")
        out[name] = value
    return out


def _series(ds, var, point, sel):
    """The DataArray of ``var`` for data point ``point``, axes in ``sel`` fixed; None if absent."""
    if var not in ds:
        return None
    da = ds[var].sel({k: v for k, v in sel.items() if k in ds[var].dims})
    if "i" in da.dims:
        if point >= ds.sizes["i"]:
            raise ValueError(f"point {point}: kernels are on the {ds.sizes['i']} training points only")
        da = da.sel(i=point, j=point)
    else:
        da = da.sel(point=point)
    return da


def _combos(*arrays, exclude=("step",)):
    """Every combination of the swept axes the arrays (None skipped) run over, less ``exclude``."""
    dims, values = [], {}
    for da in (a for a in arrays if a is not None):
        for d in da.dims:
            if d not in exclude and d not in dims:
                dims.append(d)
                values[d] = da[d].values.tolist()
    combos = [dict(zip(dims, vals)) for vals in itertools.product(*(values[d] for d in dims))]
    if len(combos) > MAX_CURVES:
        raise ValueError(f"{len(combos)} curves over {dims}; fix some axes with --sel AXIS=VALUE")
    return combos


def _at(da, combo):
    return da.sel({k: v for k, v in combo.items() if k in da.dims})


def _first(drawn: set, da, combo) -> bool:
    """True the first time the part of ``combo`` that ``da`` depends on is seen: the theory does
    not depend on width or ensemble, so one theory line serves several simulations."""
    key = tuple((k, v) for k, v in combo.items() if k in da.dims)
    if key in drawn:
        return False
    drawn.add(key)
    return True


def _label(combo) -> str:
    return ", ".join(f"{k}={v}" for k, v in combo.items()) or "all"


def sweep_figure(ds, kind="compare", quantity="f_var", point=0, axis=None, step=-1, sel=None):
    """A ``matplotlib.figure.Figure`` of the sweep ``ds`` (``symdmft.sweep.load_results``)."""
    from matplotlib.figure import Figure

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity must be one of {tuple(QUANTITIES)}, got {quantity!r}")
    if not 0 <= point < ds.sizes["point"]:
        raise ValueError(f"point must be in 0..{ds.sizes['point'] - 1}, got {point}")
    sel = sel or {}
    th_name, sim_name, label = QUANTITIES[quantity]
    theory, sim = _series(ds, th_name, point, sel), _series(ds, sim_name, point, sel)
    sim_se = _series(ds, sim_name + "_se", point, sel)
    if kind == "compare" and (theory is None or sim is None):
        raise ValueError("a compare figure needs theory and simulation in the results file")
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    if kind == "axis":
        _draw_axis(ax, ds, theory, sim, sim_se, axis, step)
        ax.set_ylabel(label.replace("(t)", f"(t={_time_label(ds, step)})"))
    else:
        if kind == "time":  # theory alone where there is theory, else the simulations
            theory, sim = (theory, None) if theory is not None else (None, sim)
        _draw_time(ax, theory, sim, sim_se)
        ax.set_xlabel("t")
        ax.set_ylabel(label)
    ax.legend(fontsize="x-small")
    fixed = f"; {_label(sel)}" if sel else ""
    fig.suptitle(f"{kind}: {label} at point {point}{fixed} (lines: theory; points: simulation, ±1 se)",
                 fontsize="medium")
    return fig


def _time_label(ds, step):
    t = ds["t"]
    return f"{float(t.values[step]):g}" if t.ndim == 1 else f"step {step}"


def _draw_time(ax, theory, sim, sim_se):
    drawn = set()
    for n, combo in enumerate(_combos(theory, sim)):
        color = f"C{n % 10}"
        if theory is not None and _first(drawn, theory, combo):
            line = _at(theory, combo)
            sub = {k: v for k, v in combo.items() if k in theory.dims}
            ax.plot(line["t"].values, line.values, color=color, label=f"theory {_label(sub)}")
        if sim is not None:
            s, se = _at(sim, combo), _at(sim_se, combo)
            idx = _marker_index(s.sizes["step"])
            ax.errorbar(s["t"].values[idx], s.values[idx], yerr=se.values[idx], fmt="o", ms=3,
                        capsize=2, color=color, label=f"simulation {_label(combo)}")


def _draw_axis(ax, ds, theory, sim, sim_se, axis, step):
    swept = [d for da in (theory, sim) if da is not None for d in da.dims if d != "step"]
    axis = axis or (swept[0] if swept else None)
    if axis not in swept:
        raise ValueError(f"axis must be a swept axis of the results ({sorted(set(swept))}), got {axis!r}")
    x = ds[axis].values
    drawn = set()
    for n, combo in enumerate(_combos(theory, sim, exclude=("step", axis))):
        color = f"C{n % 10}"
        if theory is not None and _first(drawn, theory, combo):
            th = _at(theory, combo).isel(step=step)  # constant along an axis it does not depend on
            y = th.values if axis in th.dims else np.full(x.size, float(th))
            sub = {k: v for k, v in combo.items() if k in theory.dims}
            ax.plot(x, y, "-x", color=color, label=f"theory {_label(sub)}")
        if sim is not None and axis in sim.dims:
            s, se = _at(sim, combo).isel(step=step), _at(sim_se, combo).isel(step=step)
            ax.errorbar(x, s.values, yerr=se.values, fmt="o", ms=4, capsize=2, color=color,
                        label=f"simulation {_label(combo)}")
    ax.set_xlabel(axis)


def plot_sweep(ds, path, **kwargs):
    """Draw ``sweep_figure(ds, **kwargs)`` into the PNG file ``path`` (atomically)."""
    return save_figure(sweep_figure(ds, **kwargs), path)
