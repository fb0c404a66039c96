"""The sweep specification: a base problem and the axes to sweep (issue 7, item 1).

A TOML file (read with ``tomllib``, Python >= 3.11; ``tomli`` on 3.10) has three parts, all optional::

    compute = ["theory", "simulation"]     # what each point runs

    [base]                                 # the problem every point starts from (THEORY.md §1)
    activation = "tanh"                    # defaults: those of the command line
    gamma0 = 1.0
    eta = 0.05
    steps = 60
    data = "default"                       # or an .npz (X, y, optional X_test), relative to the file
    width = 512                            # simulations only
    ensemble = 2000
    chunk = 500                            # networks per task: one simulation spreads over workers

    [axes]                                 # one dimension of the result per axis (an axis
                                           # replaces the [base] value of its key)
    gamma0 = [0.5, 1.0, 2.0]
    P = [1, 2, 3]                          # the first P training points of the data

Everything is checked here, before a cluster starts or anything is compiled; every error
names the key (``axes.gamma0[2]``). hidden_layers >= 2 is a valid spec: ``solve`` gives the deep
rich-regime means and, for deep linear nets, their finite-width variances; deep nonlinear nets
have one only on small problems (the dense propagator), otherwise the theory point is recorded
as failed with the reason (NotImplementedError).
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from .checks import check_value as _check
from .checks import check_keys as _unknown

KINDS = ("theory", "simulation")
DEFAULTS = {"activation": "tanh", "hidden_layers": 1, "gamma0": 1.0, "center": False,
            "eta": 0.05, "steps": 60, "P": None, "seed": 0, "samples": 40_000,
            "sampler": "auto", "backend": "numba", "width": 512, "ensemble": 2000,
            "chunk": 500, "data": "default"}
SWEEPABLE = ("activation", "hidden_layers", "gamma0", "center", "eta", "steps", "P", "seed",
             "samples", "sampler", "width", "ensemble")
PROBLEM = ("activation", "hidden_layers", "gamma0", "center", "eta", "steps", "P", "seed")
# The parameters a point of each kind depends on; other axes do not multiply its work.
RELEVANT = {"theory": PROBLEM + ("samples", "sampler", "backend"),
            "simulation": PROBLEM + ("width", "ensemble", "chunk")}


@dataclass(frozen=True)
class Point:
    """One task of the sweep: ``kind`` at ``coords`` (axis -> value), full ``params``."""
    kind: str
    coords: tuple
    params: tuple
    data_sha256: str

    @property
    def key(self) -> str:
        """Hash of everything the result depends on: the name of the point's file on disk."""
        text = json.dumps([self.kind, dict(self.params), self.data_sha256], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def get(self, name):
        return dict(self.params)[name]


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: ``base`` parameters, ``axes`` (name -> tuple of values), ``compute``."""
    base: dict
    axes: dict
    compute: tuple
    data: object
    data_source: str
    data_sha256: str

    def axes_of(self, kind: str) -> tuple:
        return tuple(a for a in self.axes if a in RELEVANT[kind])

    def points(self) -> list:
        """Every point of every kind, in axis order (theory first)."""
        out = []
        for kind in self.compute:
            names = self.axes_of(kind)
            for values in itertools.product(*(self.axes[a] for a in names)):
                params = {k: self.base[k] for k in RELEVANT[kind]}
                params.update(zip(names, values))
                if params["P"] is None:
                    params["P"] = self.data.P
                out.append(Point(kind, tuple(zip(names, values)), tuple(sorted(params.items())),
                                 self.data_sha256))
        return out

    def to_json(self) -> str:
        return json.dumps({"compute": list(self.compute), "base": self.base,
                           "axes": {k: list(v) for k, v in self.axes.items()}}, sort_keys=True)


def load_spec(spec, root=None) -> SweepSpec:
    """A ``SweepSpec`` from a TOML path, a dict of the TOML's contents, or a SweepSpec.

    A relative ``base.data`` path is taken from the TOML file's folder (from ``root``, default
    the working directory, for a dict).
    """
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"sweep spec: no such file {path}")
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        try:
            spec = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"sweep spec {path} is not valid TOML: {err}") from None
        root = path.parent if root is None else root
    if not isinstance(spec, dict):
        raise ValueError(f"sweep spec must be a TOML path or a dict, got {type(spec).__name__}")
    return _validate(spec, Path(root or "."))


def _validate(raw: dict, root: Path) -> SweepSpec:
    from ..cli import data_hash, load_data

    _unknown("", raw, ("compute", "base", "axes"))
    compute = raw.get("compute", list(KINDS))
    if isinstance(compute, str):
        compute = [compute]
    if not isinstance(compute, list) or not compute or any(c not in KINDS for c in compute) \
            or len(set(compute)) != len(compute):
        raise ValueError(f"sweep spec: compute must be a non-empty list of distinct {KINDS}, got {compute!r}")
    base_raw, axes_raw = raw.get("base", {}), raw.get("axes", {})
    for name, table in (("base", base_raw), ("axes", axes_raw)):
        if not isinstance(table, dict):
            raise ValueError(f"sweep spec: [{name}] must be a table")
    _unknown("base.", base_raw, tuple(DEFAULTS))
    _unknown("axes.", axes_raw, SWEEPABLE)
    source = base_raw.get("data", "default")
    if not isinstance(source, str):
        raise ValueError("sweep spec: base.data must be \"default\" or the path of an .npz file")
    path = None if source == "default" else str(root / source)
    try:
        data, data_source = load_data(path)
    except ValueError as err:
        raise ValueError(f"sweep spec: base.data: {err}") from None
    base = dict(DEFAULTS, **base_raw, data=data_source)
    for key, value in base_raw.items():
        if key != "data":
            base[key] = _check(f"base.{key}", key, value, data.P)
    axes = {}
    for key, values in axes_raw.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep spec: axes.{key} must be a non-empty list of values")
        checked = [_check(f"axes.{key}[{n}]", key, v, data.P) for n, v in enumerate(values)]
        if len(set(map(repr, checked))) != len(checked):
            raise ValueError(f"sweep spec: axes.{key} repeats a value: {values!r}")
        axes[key] = tuple(checked)
    if not any(k in axes for kind in compute for k in RELEVANT[kind]) and axes:
        raise ValueError(f"sweep spec: no axis in {sorted(axes)} changes the {list(compute)} points")
    return SweepSpec(base, axes, tuple(compute), data, data_source, data_hash(data))
