"""Results on disk: NetCDF files of ``Result`` / ``SimResult`` datasets with provenance.

``save`` writes atomically (readers see the old file or the new one, never half of one) and
refuses non-finite data; ``load`` reads a file back fully into memory and checks that it is a
symdmft result (a ``kind`` attribute of "theory" or "simulation").
"""
from __future__ import annotations

import datetime
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

KINDS = ("theory", "simulation")

# Data variables allowed to hold NaN: the targets, undefined on test points.
NAN_ALLOWED = ("y",)


def netcdf_attrs(params: dict) -> dict:
    """``params`` with every value a str, int or float (what NetCDF attributes can hold).

    Bools become 0 / 1, NumPy scalars plain Python numbers, anything else its ``str``.
    """
    out = {}
    for key, value in params.items():
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        elif isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, (int, float, str)):
            value = str(value)
        out[str(key)] = value
    return out


def provenance() -> dict:
    """Versions of symdmft and its numerical stack, and a UTC timestamp (no host names)."""
    import numba
    import sympy
    import xarray

    from . import __version__

    stamp = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {"symdmft_version": __version__, "numpy_version": np.__version__,
            "numba_version": numba.__version__, "sympy_version": sympy.__version__,
            "xarray_version": xarray.__version__, "python_version": platform.python_version(),
            "created_utc": stamp.isoformat()}


def _engine() -> str:
    try:
        import h5netcdf  # noqa: F401
        import h5py  # noqa: F401
    except ImportError:
        return "scipy"  # NetCDF3: no compression, but needs nothing beyond scipy
    return "h5netcdf"


def check_finite(dataset) -> None:
    """Raise ``ValueError`` naming the first data variable (other than y) with NaN or inf."""
    for name, var in dataset.data_vars.items():
        if name in NAN_ALLOWED or not np.issubdtype(var.dtype, np.number):
            continue
        values = np.asarray(var.values)
        if not np.all(np.isfinite(values)):
            bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
            raise ValueError(f"refusing to save: data variable {name!r} holds {bad} NaN/inf "
                             f"value(s) of {np.size(values)}")


def save(dataset, path) -> Path:
    """Write ``dataset`` (an ``xarray.Dataset``) to the NetCDF file ``path``, atomically.

    Provenance attributes (``provenance()``) are added to a copy; the caller's dataset is
    unchanged. Engine h5netcdf, or scipy (NetCDF3) where h5netcdf/h5py are missing.
    """
    check_finite(dataset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = dataset.copy(deep=False)
    out.attrs = netcdf_attrs({**dataset.attrs, **provenance()})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        out.to_netcdf(tmp, engine=_engine())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path):
    """Read a file written by ``save`` into memory; ``xarray.Dataset``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a file that is not
    NetCDF or not a symdmft result.
    """
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such result file: {path}")
    try:
        dataset = xr.load_dataset(path)
    except Exception as err:  # xarray's message lists engines; say what the file is not
        raise ValueError(f"{path} is not a readable NetCDF file ({type(err).__name__}: {err})") from None
    dataset.attrs = netcdf_attrs(dataset.attrs)  # NumPy scalars back to Python numbers
    kind = dataset.attrs.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{path} is not a symdmft result: attribute 'kind' is {kind!r}, "
                         f"expected one of {KINDS}")
    return dataset
