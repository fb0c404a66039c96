"""Figures of theory against simulation (THEORY.md §5), drawn without pyplot's global state."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

MAX_MARKERS = 16  # simulation points per curve; more hide the theory line


def _marker_index(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, MAX_MARKERS)).round().astype(int))


def comparison_figure(cmp):
    """A three-panel ``matplotlib.figure.Figure`` from ``symdmft.observables.compare.compare``.

    Panels: mean f(t) per point; N Var f_mu(t); N Var K_mumu(t). Lines: theory; points with
    error bars (one standard error): the simulated ensemble.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4), layout="constrained")
    axes = fig.subplots(1, 3)
    t = cmp["t"].values
    idx = _marker_index(t.size)
    panels = (("f_mean", "point", "mean f(t)"), ("f_var", "point", "N Var f(t)"),
              ("ntk_var", "i", "N Var K_ii(t)"))
    for ax, (q, dim, title) in zip(axes, panels):
        for n in cmp[dim].values:
            color = f"C{n % 10}"
            theory = cmp[f"{q}_theory"].sel({dim: n}).values
            sim = cmp[f"{q}_sim"].sel({dim: n}).values
            se = cmp[f"{q}_sim_se"].sel({dim: n}).values
            ax.plot(t, theory, color=color, label=f"{dim} {n} theory")
            ax.errorbar(t[idx], sim[idx], yerr=se[idx], fmt="o", ms=3, color=color, capsize=2,
                        label=f"{dim} {n} simulation")
        ax.set_xlabel("t")
        ax.set_title(title)
    axes[0].legend(fontsize="x-small", ncol=2)
    a = cmp.attrs
    fig.suptitle(f"{a.get('activation')}, gamma0={a.get('gamma0')}, eta={a.get('eta')}, "
                 f"center={a.get('center')}: theory (lines) vs N={a.get('width')}, "
                 f"E={a.get('ensemble')} networks (points, ±1 se)", fontsize="medium")
    return fig


def save_figure(fig, path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def plot_comparison(cmp, path) -> Path:
    """Draw ``comparison_figure(cmp)`` into the PNG file ``path``."""
    return save_figure(comparison_figure(cmp), path)
