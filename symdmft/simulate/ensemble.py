"""Ensembles of finite-width networks trained by discrete gradient descent (THEORY.md §1, §5).

``simulate`` is the ground truth of the project: E independently initialised width-N MLPs,
trained with exactly the update rule and time grid the theory uses, recording outputs and
equal-time kernels at every step.
"""
from __future__ import annotations


import numpy as np

from ..arch.mlp import MLP, check_positive
from ..runtime.samplers import check_seed
from ..progress import show_progress
from ..problem import Data, TimeGrid
from .network import NetworkBatch
from .result import SimResult

# Networks per chunk: about 16 MB of weights and fields each. Far below the 256 MB memory
# bound, and measured 2-3x faster than 256 MB chunks (the weights stay in cache across
# forward, backward and update); results do not depend on it.
CHUNK_BYTES = 16 * 2**20


def check_ensemble(width, ensemble, seed, **optional) -> tuple:
    """(width, ensemble, seed, *optional) checked; each optional positive integer may be None."""
    checked = [None if v is None else check_positive(k, v, integer=True) for k, v in optional.items()]
    return (check_positive("width", width, integer=True), check_positive("ensemble", ensemble, integer=True),
            check_seed(seed), *checked)


def _check_inputs(net, data, grid, width, ensemble, seed, chunk):
    for name, value, kind in (("net", net, MLP), ("data", data, Data), ("grid", grid, TimeGrid)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a symdmft {kind.__name__}, got {type(value).__name__}")
    return check_ensemble(width, ensemble, seed, chunk=chunk)


def simulate(net: MLP, data: Data, grid: TimeGrid, width: int, ensemble: int, seed: int = 0,
             chunk: int | None = None, progress: bool | None = None) -> SimResult:
    """Train ``ensemble`` width-``width`` networks ``net`` on ``data`` for ``grid.steps`` steps.

    The update is THEORY.md §1 exactly: gradient descent with step ``eta gamma0^2 N`` on
    ``1/2 sum_mu (y_mu - f_mu)^2`` over the training points, all parameters updated from
    the same step-k state; test points (rows of ``data.X_all`` beyond P) only have their
    outputs recorded. With ``net.center`` the output is ``f(t) - f(0)`` (initial network
    frozen) and the error signal ``y - (f(t) - f(0))``.

    Network e draws its initial weights from ``default_rng(SeedSequence(seed).spawn(E)[e])``,
    so the result depends on ``seed`` but not on ``chunk`` (networks simulated together;
    default: about 16 MB of arrays per chunk). ``progress``: a tqdm bar over chunks; None
    shows it only when stderr is a terminal.

    Raises ``ValueError`` for bad width / ensemble / seed / chunk, and ``FloatingPointError``
    naming the step when outputs, kernels or pre-activations become non-finite (eta too large).
    Returns a ``SimResult`` (THEORY.md §5 compares its ensemble statistics with the theory).
    """
    width, E, seed, chunk = _check_inputs(net, data, grid, width, ensemble, seed, chunk)
    L, P, steps = net.hidden_layers, data.P, grid.steps
    per_net = NetworkBatch.nbytes_per_network(net, width, data.D, data.P_all)
    chunk = min(E, chunk or max(1, CHUNK_BYTES // per_net))

    X_train = data.X
    Kx = X_train @ X_train.T / data.D
    f = np.empty((E, steps + 1, data.P_all))
    names = ["K"] + [f"Phi{l}" for l in range(1, L + 1)] + [f"G{l}" for l in range(1, L + 1)]
    kernels = {name: np.empty((E, steps + 1, P, P)) for name in names}
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(E)]

    from tqdm.auto import tqdm

    starts = range(0, E, chunk)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for lo in tqdm(starts, desc="simulate", unit="chunk", disable=not show_progress(progress)):
            hi = min(E, lo + chunk)
            batch = NetworkBatch.initialise(net, width, data.D, rngs[lo:hi])
            _train_chunk(batch, data, grid, Kx, f[lo:hi], {k: v[lo:hi] for k, v in kernels.items()}, lo)

    params = {"width": width, "ensemble": E, "seed": seed, "eta": grid.eta, "steps": steps}
    params.update(net.describe())
    params.update(data.describe())
    return SimResult(t=grid.t, f=f, kernels=kernels, y=data.y_all, params=params)


def _train_chunk(batch: NetworkBatch, data: Data, grid: TimeGrid, Kx, f_out, k_out, offset):
    """Record step k's state into ``f_out[:, k]`` / ``k_out[name][:, k]``, then update, k = 0..steps."""
    P, X_all, X_train = data.P, data.X_all, data.X
    f0 = None
    for k in range(grid.steps + 1):
        fwd = batch.forward(X_all)
        if batch.net.center:
            f0 = fwd.f.copy() if f0 is None else f0
            out = fwd.f - f0
        else:
            out = fwd.f
        g = batch.backward(fwd, P)
        kern = batch.kernels(fwd, g, Kx)
        _check_finite(k, grid.eta, offset, [out, *kern.values(), *fwd.h])
        f_out[:, k] = out
        for name, value in kern.items():
            k_out[name][:, k] = value
        if k < grid.steps:
            batch.update(fwd, g, data.y - out[:, :P], X_train, grid.eta)


def _check_finite(k: int, eta: float, offset: int, arrays) -> None:
    bad = np.zeros(arrays[0].shape[0], dtype=bool)
    for arr in arrays:
        bad |= ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
    if bad.any():
        which = (np.flatnonzero(bad) + offset).tolist()
        shown = ", ".join(map(str, which[:5])) + (", ..." if len(which) > 5 else "")
        raise FloatingPointError(
            f"simulation diverged at step {k} (t = {k * eta:.6g}): non-finite outputs, kernels "
            f"or pre-activations in network(s) {shown}; reduce eta (now {eta:g})")
