"""Theory against trained-network ensembles (THEORY.md §5).

``compare(theory, sim)`` puts the propagator's predictions next to ensemble estimates with
their sampling errors: the ensemble mean of f, ``N Var f_mu(t)`` and ``N Var K_mumu(t)``.
A variance from E networks has standard error ``sqrt((m4 - s^4) / E)`` (m4 the sample fourth
central moment; ``s^2 sqrt(2/E)`` for Gaussian samples, 3% at E = 2000).
"""
from __future__ import annotations

import numpy as np

# Attributes two files must share to describe the same problem.
PROBLEM_ATTRS = ("activation", "hidden_layers", "gamma0", "center", "eta", "steps", "P", "P_test", "D")
OPTIONAL_ATTRS = ("data_sha256",)  # checked where both files carry it (the command line adds it)

QUANTITIES = ("f_mean", "f_var", "ntk_var")


def check_same_problem(theory, sim) -> None:
    """Raise ``ValueError`` listing every attribute, time or target in which the two differ."""
    diffs = []
    for key in PROBLEM_ATTRS + OPTIONAL_ATTRS:
        a, b = theory.attrs.get(key), sim.attrs.get(key)
        if key in OPTIONAL_ATTRS and (a is None or b is None):
            continue
        same = a == b
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            same = bool(np.isclose(a, b, rtol=1e-12, atol=0.0))
        if not same:
            diffs.append(f"{key}: {a!r} vs {b!r}")
    if not diffs:
        if theory.sizes["t"] != sim.sizes["t"] or not np.allclose(theory["t"], sim["t"]):
            diffs.append("time grids differ")
        elif not np.allclose(theory["y"], sim["y"], equal_nan=True):
            diffs.append("targets y differ")
    if diffs:
        raise ValueError("theory and simulation describe different problems: " + "; ".join(diffs))


def variance_with_error(x: np.ndarray, axis: int = 0):
    """Unbiased variance along ``axis`` and its standard error ``sqrt((m4 - s^4) / E)``."""
    E = x.shape[axis]
    if E < 2:
        raise ValueError(f"a variance needs at least 2 networks, the ensemble has {E}")
    dev = x - x.mean(axis=axis, keepdims=True)
    var = np.sum(dev**2, axis=axis) / (E - 1)
    m4 = np.mean(dev**4, axis=axis)
    se = np.sqrt(np.maximum(m4 - var**2, 0.0) / E)
    return var, se


def compare(theory_ds, sim_ds):
    """``xarray.Dataset`` of ``<q>_theory``, ``<q>_sim``, ``<q>_sim_se`` and ``<q>_z``.

    q = f_mean (t, point): infinite-width f against the ensemble mean (se: std / sqrt(E));
    f_var (t, point) and ntk_var (t, i): ``N Var`` of f_mu(t) and of the NTK diagonal
    K_ii(t), N the simulated width. z = (sim - theory) / se (NaN where se = 0). attrs: the
    simulation's problem parameters plus width and ensemble.
    """
    import xarray as xr

    if theory_ds.attrs.get("kind") != "theory" or sim_ds.attrs.get("kind") != "simulation":
        raise ValueError("compare needs a theory dataset and a simulation dataset (attribute 'kind'), "
                         f"got {theory_ds.attrs.get('kind')!r} and {sim_ds.attrs.get('kind')!r}")
    check_same_problem(theory_ds, sim_ds)
    N = float(sim_ds.attrs["width"])
    f = np.asarray(sim_ds["f"].values)                      # (E, t, point)
    E = f.shape[0]
    K_diag = np.diagonal(np.asarray(sim_ds["ntk"].values), axis1=2, axis2=3)   # (E, t, i)
    f_var, f_var_se = variance_with_error(f)
    k_var, k_var_se = variance_with_error(K_diag)
    sim = {
        "f_mean": (f.mean(axis=0), f.std(axis=0, ddof=1) / np.sqrt(E)),
        "f_var": (N * f_var, N * f_var_se),
        "ntk_var": (N * k_var, N * k_var_se),
    }
    theory = {
        "f_mean": theory_ds["f"].values,
        "f_var": theory_ds["f_var"].values,
        "ntk_var": np.diagonal(theory_ds["ntk_var"].values, axis1=1, axis2=2),
    }
    dims = {"f_mean": ("t", "point"), "f_var": ("t", "point"), "ntk_var": ("t", "i")}
    data = {}
    for q in QUANTITIES:
        value, se = sim[q]
        z = np.full_like(value, np.nan)
        np.divide(value - theory[q], se, out=z, where=se > 0)
        data[f"{q}_theory"] = (dims[q], np.asarray(theory[q], dtype=float))
        data[f"{q}_sim"] = (dims[q], value)
        data[f"{q}_sim_se"] = (dims[q], se)
        data[f"{q}_z"] = (dims[q], z)
    coords = {"t": sim_ds["t"].values, "point": np.arange(f.shape[2]), "i": np.arange(K_diag.shape[2])}
    attrs = {key: sim_ds.attrs[key] for key in PROBLEM_ATTRS if key in sim_ds.attrs}
    attrs.update(width=int(N), ensemble=int(E), kind="comparison")
    return xr.Dataset(data, coords=coords, attrs=attrs)
