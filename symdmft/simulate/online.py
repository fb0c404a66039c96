"""Online learning of finite-width two-layer networks: the ground truth of ``symdmft.online``.

``simulate_online(net, population, grid, width, ensemble)`` trains E networks of THEORY.md §1
(f = a . phi(W x / sqrt(D)) / (gamma0 N), step eta gamma0^2 N) on the population loss
``1/2 E_x (y - f)^2``:

* ``batch=None``: population gradient descent, E_x by the population's quadrature rule: the
  exact dynamics the theory describes (docs/online_learning.md §1);
* ``batch=B``: one-pass SGD, a fresh minibatch of B inputs per step and network, drawn from
  the true input law (N(0, I) or the training points). Its gradient is unbiased for the true
  expectation, which the quadrature rule approximates; its noise vanishes as B grows.

The loss is always the population loss (quadrature), so both modes record the same curve.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..arch.mlp import MLP, check_positive
from ..online.population import Population
from ..problem import TimeGrid
from ..progress import show_progress
from .ensemble import check_ensemble

CHUNK_BYTES = 16 * 2**20


@dataclass(eq=False)
class OnlineSimResult:
    """``loss`` (E, T+1) population loss per network; ``f_mean``, ``f_var`` (T+1, Q): ensemble
    mean and (unbiased) variance of the outputs on the population's nodes."""
    t: np.ndarray
    loss: np.ndarray
    f_mean: np.ndarray
    f_var: np.ndarray
    params: dict = field(default_factory=dict)


def simulate_online(net: MLP, population: Population, grid: TimeGrid, width: int, ensemble: int,
                    seed: int = 0, batch: int | None = None, chunk: int | None = None,
                    progress: bool | None = None) -> OnlineSimResult:
    """Train ``ensemble`` width-``width`` networks online (module docstring).

    Initial weights of network e come from ``default_rng(SeedSequence(seed).spawn(E)[e])``
    (independent of ``chunk``); minibatches from one generator per chunk, seeded by ``seed``
    and the chunk's first network, so with ``batch`` the result also depends on ``chunk``.
    """
    if not isinstance(population, Population):
        raise TypeError(f"population must be a symdmft Population, got {type(population).__name__}")
    if net.hidden_layers != 1:
        raise ValueError(f"online learning is implemented for hidden_layers=1, got {net.hidden_layers}")
    width, E, seed, batch = check_ensemble(width, ensemble, seed, batch=batch)
    per_net = 8 * width * (population.Q + (batch or 0)) * 4
    chunk = min(E, check_positive("chunk", chunk, integer=True) if chunk else
                max(1, CHUNK_BYTES // per_net))
    phi, dphi = net.numpy_functions()
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(E)]
    loss = np.empty((E, grid.steps + 1))
    f_sum = np.zeros((grid.steps + 1, population.Q))
    f_sq = np.zeros_like(f_sum)
    for lo in tqdm(range(0, E, chunk), desc="simulate", unit="chunk",
                   disable=not show_progress(progress)):
        hi = min(E, lo + chunk)
        W = np.stack([r.standard_normal((width, population.dim)) for r in rngs[lo:hi]])
        a = np.stack([r.standard_normal(width) for r in rngs[lo:hi]])
        # minibatch stream of this chunk: disjoint from the init streams and the samplers' seed
        batches = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, lo))) \
            if batch else None
        with np.errstate(over="ignore", invalid="ignore"):    # divergence is raised by _train
            f = _train(W, a, population, grid, net, phi, dphi, loss[lo:hi], batch, batches, lo)
        f_sum += f.sum(axis=0)
        f_sq += (f ** 2).sum(axis=0)
    f_mean = f_sum / E
    f_var = (f_sq - E * f_mean ** 2) / max(E - 1, 1)
    params = {"width": width, "ensemble": E, "seed": seed, "eta": grid.eta, "steps": grid.steps,
              "batch": batch or 0, **net.describe(), **population.describe()}
    return OnlineSimResult(grid.t, loss, f_mean, f_var, params)


def _train(W, a, pop, grid, net, phi, dphi, loss_out, batch, batches, offset):
    """Population GD or one-pass SGD of a chunk of networks; returns f (C, T+1, Q) on the nodes."""
    C, N, D = W.shape
    g, eta, sqrt_d = net.gamma0, grid.eta, np.sqrt(D)
    f_out = np.empty((C, grid.steps + 1, pop.Q))
    f0 = None
    W0, a0 = W.copy(), a.copy()        # the frozen initial network of a centred output
    for k in range(grid.steps + 1):
        H = W @ pop.X.T / sqrt_d                                    # (C, N, Q)
        act = phi(H)
        f = np.einsum("cn,cnq->cq", a, act) / (g * N)
        if net.center:
            f0 = f.copy() if f0 is None else f0
            f = f - f0
        if not np.all(np.isfinite(f)):
            bad = int(np.flatnonzero(~np.isfinite(f).all(axis=1))[0]) + offset
            raise FloatingPointError(f"online simulation diverged at step {k} in network {bad}; "
                                     f"reduce eta (now {eta:g})")
        f_out[:, k] = f
        loss_out[:, k] = 0.5 * ((pop.y - f) ** 2) @ pop.rho
        if k == grid.steps:
            break
        if batch is None:
            Xb, act_b, Hb, r = pop.X[None], act, H, pop.rho * (pop.y - f)
        else:
            Xb, yb = pop.sample(batches, (C, batch))
            Hb = np.einsum("cnd,cbd->cnb", W, Xb) / sqrt_d
            act_b = phi(Hb)
            fb = np.einsum("cn,cnb->cb", a, act_b) / (g * N)
            if net.center:
                H0 = np.einsum("cnd,cbd->cnb", W0, Xb) / sqrt_d
                fb = fb - np.einsum("cn,cnb->cb", a0, phi(H0)) / (g * N)
            r = (pop.rho.sum() / batch) * (yb - fb)
        grad_w = np.einsum("cnb,cb,cbd->cnd", dphi(Hb), r, np.broadcast_to(Xb, (C, *Xb.shape[1:])))
        W = W + (eta * g / sqrt_d) * a[:, :, None] * grad_w
        a = a + eta * g * np.einsum("cnb,cb->cn", act_b, r)
    return f_out
