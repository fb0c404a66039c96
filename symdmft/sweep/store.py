"""Sweep results on disk: one file per finished point, and the assembled Dataset (issue 7, item 2).

Each finished point is written, atomically and by the client alone (workers need no shared
file system), to ``<out>.points/<kind>-<key>.nc`` with ``symdmft.io.save``; ``key`` hashes
every parameter the point depends on and the data's SHA-256. A rerun loads the files whose
key matches and computes only the rest, so an interrupted sweep loses no finished point. The
final file is assembled from the point files: one ``xarray.Dataset`` with a dimension per
swept axis, NaN where a point failed or has fewer steps / training points than the largest.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .tasks import DIMS, SIM_VARIABLES, THEORY_VARIABLES

VARIABLES = {"theory": THEORY_VARIABLES, "simulation": SIM_VARIABLES}
PREFIX = {"theory": "theory", "simulation": "sim"}


class PointStore:
    """The folder ``<out>.points`` of one sweep's per-point files (None: keep nothing)."""

    def __init__(self, out):
        self.dir = None if out is None else Path(out).with_name(Path(out).name + ".points")

    def path(self, point) -> Path:
        return self.dir / f"{point.kind}-{point.key}.nc"

    def load(self, point):
        """The point's saved Dataset, or None if absent or unreadable (then it is recomputed)."""
        from ..io import load
        if self.dir is None or not self.path(point).is_file():
            return None
        try:
            ds = load(self.path(point))
        except (OSError, ValueError):
            return None
        return ds if ds.attrs.get("key") == point.key else None

    def save(self, point, ds):
        """Write the point's file (``io.save``: atomic, with provenance); returns the Dataset kept."""
        from ..io import save
        ds = ds.copy()
        ds.attrs.update(kind=point.kind, key=point.key, data_sha256=point.data_sha256,
                        params=json.dumps(dict(point.params), sort_keys=True),
                        coords=json.dumps(dict(point.coords)))
        if self.dir is not None:
            try:
                save(ds, self.path(point))
            except ValueError as err:  # non-finite numbers: keep the point as failed
                ds = ds.drop_vars(list(ds.data_vars)).assign_attrs(error=f"ValueError: {err}")
                save(ds, self.path(point))
        return ds


def assemble(spec, results: dict, attrs: dict):
    """The sweep Dataset from ``results`` (point key -> point Dataset) of ``spec.points()``."""
    import xarray as xr

    data = spec.data
    points = spec.points()
    steps = max(p.get("steps") for p in points)
    coords = {"step": np.arange(steps + 1), "point": np.arange(data.P_all),
              "i": np.arange(data.P), "j": np.arange(data.P)}
    coords.update({a: list(v) for a, v in spec.axes.items()})
    eta = ("eta",) if "eta" in spec.axes else ()
    eta_values = np.asarray(spec.axes.get("eta", [spec.base["eta"]]), dtype=float)
    t = eta_values[:, None] * coords["step"][None, :]
    coords["t"] = ((*eta, "step"), t if eta else t[0])
    out = {"y": (("point",), data.y_all)}   # NaN on test points without targets
    sizes = {"step": steps + 1, "point": data.P_all, "i": data.P, "j": data.P}
    for kind in spec.compute:
        names = spec.axes_of(kind)
        shape = tuple(len(spec.axes[a]) for a in names)
        arrays = {n: np.full(shape + tuple(sizes[d] for d in DIMS[n]), np.nan) for n in VARIABLES[kind]}
        errors, seconds = np.full(shape, "", dtype=object), np.zeros(shape)
        for p in (p for p in points if p.kind == kind):
            idx = tuple(spec.axes[a].index(v) for a, v in p.coords)
            ds = results[p.key]
            errors[idx], seconds[idx] = ds.attrs.get("error", ""), ds.attrs.get("seconds", np.nan)
            for name in (n for n in VARIABLES[kind] if n in ds):  # failed points stay NaN
                sel = tuple(np.asarray(ds[d].values) for d in DIMS[name])
                arrays[name][idx][np.ix_(*sel)] = ds[name].transpose(*DIMS[name]).values
        for name, values in arrays.items():
            out[name] = (names + DIMS[name], values)
        out[f"{PREFIX[kind]}_error"] = (names, errors.astype(str))
        out[f"{PREFIX[kind]}_seconds"] = (names, seconds)
    return xr.Dataset(out, coords=coords, attrs=attrs)


def write_results(dataset, path) -> Path:
    """Write the sweep atomically with provenance: NetCDF (``.nc``), or Zarr (``.zarr``, needs
    the optional zarr package). NaN is allowed here (failed points); ``io.save`` refuses it."""
    from ..io import _engine, netcdf_attrs, provenance

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = dataset.copy(deep=False)
    out.attrs = netcdf_attrs({**dataset.attrs, **provenance()})
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")) / path.name
    try:
        if path.suffix == ".zarr":
            out.to_zarr(tmp, mode="w")
            if path.exists():
                shutil.rmtree(path)  # a directory cannot be replaced in one step
        else:
            out.to_netcdf(tmp, engine=_engine())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return path


def load_results(path):
    """Read a sweep file (NetCDF or Zarr) into memory; ``ValueError`` if it is not one."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such sweep results: {path}")
    try:
        ds = xr.open_zarr(path).load() if path.suffix == ".zarr" else xr.load_dataset(path)
    except Exception as err:
        raise ValueError(f"{path} is not a readable results file ({type(err).__name__}: {err})") from None
    if ds.attrs.get("kind") != "sweep":
        raise ValueError(f"{path} is not a symdmft sweep: attribute 'kind' is {ds.attrs.get('kind')!r}")
    return ds
