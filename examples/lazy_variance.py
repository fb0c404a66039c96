"""Lazy deep networks: prediction variance vs time for several depths, theory vs trained networks.

In the lazy limit (gamma0 -> 0, centred outputs) the NTK is frozen at its random initial
value and the prediction covariance depends on the architecture only through the mean
NTK and N Cov(K(0)) (THEORY.md §3). Deeper relu nets accumulate kernel noise layer by
layer (N Var K / K^2 grows like 5L), so their predictions fluctuate more. This script
compares ``sd.lazy_solve`` (discrete GD, the simulator's exact update) with ensembles of
``sd.simulate`` networks (gamma0 = 0.02, N = 256) for L = 1..4 on the default problem:

* left: N Var f(t) on the test point; middle: on training point 0;
* right: N Var K_00(0) / K_00^2 per depth (the inverse signal-to-noise ratio of the NTK).

Markers are ensembles (error bars: one standard error of the variance); lines the theory.
Dotted lines mark t sqrt(N Var K / N) = 0.3 per depth: beyond them the 1/sqrt(N) expansion
degrades at this width (THEORY.md §5) and the ensembles drift from the leading order. Writes ``lazy_variance.png``.

Run: ``python examples/lazy_variance.py [--ensemble 1500] [--width 256]``
"""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import symdmft as sd  # noqa: E402
from symdmft.observables.compare import variance_with_error  # noqa: E402


def main(ensemble=1500, width=256, depths=(1, 2, 3, 4), activation="relu", out="lazy_variance.png"):
    data = sd.default_data()
    grid = sd.TimeGrid(eta=0.25, steps=16)
    P = data.P
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    inv_snr_th, inv_snr_sim = [], []
    for n, L in enumerate(depths):
        color = f"C{n}"
        net = sd.mlp(hidden_layers=L, activation=activation, gamma0=0.02, center=True)
        stats = sd.initial_statistics(net, data)
        theory = sd.lazy_solve(net, data, grid, stats=stats)
        sim = sd.simulate(net, data, grid, width=width, ensemble=ensemble, seed=n, progress=False)
        var, se = variance_with_error(sim.f)
        limit = 0.3 / np.sqrt(np.max(np.diag(stats.var["K"])[:P]) / width)
        for ax, point in ((axes[0], P), (axes[1], 0)):
            ax.plot(grid.t, theory.f_var[:, point], "-", color=color, label=f"L = {L} theory")
            ax.errorbar(grid.t[1:], width * var[1:, point], width * se[1:, point], fmt="o", ms=3,
                        color=color, label=f"L = {L}, N = {width}")
            ax.axvline(limit, color=color, ls=":", lw=1)
        K0 = sim.ntk[:, 0, 0, 0]
        v, s = variance_with_error(K0)
        inv_snr_th.append(stats.var["K"][0, 0] / stats.ntk[0, 0] ** 2)
        inv_snr_sim.append((width * v / stats.ntk[0, 0] ** 2, width * s / stats.ntk[0, 0] ** 2))
        print(f"L = {L}: K_00 = {stats.ntk[0, 0]:.4f}, N Var K_00 theory {stats.var['K'][0, 0]:.4f} "
              f"sim {width * v:.4f} +- {width * s:.4f}; N Var f_test(t={grid.t[-1]:g}) theory "
              f"{theory.f_var[-1, P]:.4f} sim {width * var[-1, P]:.4f} +- {width * se[-1, P]:.4f}; "
              f"expansion limit t = {limit:.2f}")
    axes[0].set(xlabel="t", ylabel="N Var f(t)", title="test point")
    axes[1].set(xlabel="t", ylabel="N Var f(t)", title="training point 0")
    axes[2].plot(depths, inv_snr_th, "k-", label="theory")
    sim_v = np.array(inv_snr_sim)
    axes[2].errorbar(depths, sim_v[:, 0], sim_v[:, 1], fmt="o", color="C3", label=f"N = {width}")
    axes[2].set(xlabel="hidden layers L", ylabel="N Var K_00(0) / K_00^2", title="NTK noise accumulates with depth",
                xticks=list(depths))
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"lazy {activation} networks (gamma0 = 0.02, centred, eta = {grid.eta}): "
                 f"theory vs {ensemble} trained networks per depth")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ensemble", type=int, default=1500)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--out", default="lazy_variance.png")
    args = parser.parse_args()
    main(ensemble=args.ensemble, width=args.width, out=args.out)
