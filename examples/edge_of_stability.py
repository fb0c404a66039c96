"""Edge of stability: sharpness lambda_max(K(t)) against 2/eta, theory vs trained networks.

Tanh two-layer network, default data with targets x3, gamma0 = 2 (tests/test_large_eta.py).
eta = 0.3: sharpening without reaching 2/eta in this window; eta = 0.7: catapult, progressive
sharpening, then the sharpness hovers at 2/eta (edge of stability); eta = 0.9: catapult, then
a flat minimum below 2/eta. Right panel: N Var f_0(t), theory vs ensemble, at eta = 0.7.
Writes edge_of_stability.png (about 30 s on 2 cores). On the plateau (steps 20-60) the
N = 4000 ensemble variance stays far below the leading-order theory: the 1/N expansion is not
valid at the edge at this width (tests/test_large_eta.py docstrings).
"""
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import symdmft as sd
from symdmft.observables.compare import variance_with_error

STEPS, WIDTH, E = 60, 4000, 200


def main(out="edge_of_stability.png"):
    b = sd.default_data()
    data = sd.Data(b.X, 3 * b.y, X_test=b.X_test)
    net = sd.mlp(hidden_layers=1, activation="tanh", gamma0=2.0)
    fig, (ax, axv) = plt.subplots(1, 2, figsize=(12, 4.5))
    for eta, color in ((0.3, "C0"), (0.7, "C1"), (0.9, "C2")):
        grid = sd.TimeGrid(eta, STEPS)
        th = sd.solve(net, data, grid, samples=40_000, seed=0)
        sim = sd.simulate(net, data, grid, width=WIDTH, ensemble=E, seed=1, progress=False)
        sh = sim.sharpness
        k = np.arange(STEPS + 1)
        ax.plot(k, th.sharpness, color=color, lw=2, label=f"theory, eta = {eta}")
        m, s = sh.mean(0), sh.std(0)
        ax.fill_between(k, m - s, m + s, color=color, alpha=0.2)
        ax.plot(k, m, color=color, ls="--", lw=1, label=f"N = {WIDTH} mean ± sd")
        ax.axhline(2 / eta, color=color, ls=":", lw=1)
        if eta == 0.7:
            var, se = variance_with_error(sim.f[:, :, 0], axis=0)
            axv.plot(k, th.f_var[:, 0], "k-", lw=2, label="theory N Var f_0")
            axv.errorbar(k, WIDTH * var, yerr=WIDTH * se, fmt="o", ms=3, color=color,
                         label=f"N = {WIDTH}, E = {E}")
    ax.set(xlabel="step k (t = k eta)", ylabel="sharpness lambda_max(K)",
           title="sharpness vs 2/eta (dotted)", ylim=(1.5, 7))
    ax.legend(fontsize=7, ncol=2)
    axv.set(xlabel="step k", ylabel="N Var f_0(t)", yscale="log",
            title="finite-width variance through the edge (eta = 0.7)")
    axv.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print("wrote", out)


if __name__ == "__main__":
    main(*sys.argv[1:])
