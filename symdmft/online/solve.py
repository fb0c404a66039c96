"""``solve_online``: infinite-width online learning and its finite-width laws (docs/online_learning.md).

Stages: check inputs -> activation derivatives (SymPy) -> initial particles (quadrature of
N(0, I)) -> population GD of the particle system -> first- and second-order response to each
particle's mass (Numba, parts on threads) -> variances and mean corrections.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from tqdm import tqdm

from ..arch.activations import refuse_kink
from ..arch.mlp import MLP, check_positive
from ..problem import TimeGrid
from ..progress import show_progress
from ..runtime.samplers import check_sampling
from .expansion import directions
from .particles import Particles, forward
from .population import Population
from .result import OnlineResult


def _check(net, population, grid, samples, seed, sampler):
    for name, value, kind in (("net", net, MLP), ("population", population, Population),
                              ("grid", grid, TimeGrid)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a symdmft {kind.__name__}, got {type(value).__name__}")
    if net.hidden_layers != 1:
        raise ValueError(f"online learning is implemented for two-layer networks "
                         f"(hidden_layers=1), got hidden_layers={net.hidden_layers}")
    refuse_kink(net.activation, net.activation_name, "the online expansion",
                "its O(1/N) laws would miss the neurons crossing the kink")
    return check_sampling(samples, seed, sampler)


def solve_online(net: MLP, population: Population, grid: TimeGrid, samples: int = 2**15,
                 expansion_samples: int = 2048, seed: int = 0, sampler: str = "qmc",
                 progress: bool | None = None) -> OnlineResult:
    """Population GD of the two-layer ``net`` on ``population``: loss curve and O(1/N) laws.

    Two particle rules of the initial law N(0, I_{D+1}) of (w, a), drawn by ``sampler``
    (``runtime.samplers``): ``samples`` particles for the infinite-width curve (cost linear in
    them) and ``expansion_samples`` for the O(1/N) laws (cost expansion_samples^2 x nodes x
    steps; they only need relative accuracy). Scrambled Sobol is the default: the influence of
    a neuron can grow fast with |a| (docs/online_learning.md §5), where a Gauss-Hermite rule's
    polynomial exactness does not help.
    """
    samples, seed = _check(net, population, grid, samples, seed, sampler)
    expansion_samples = check_positive("expansion_samples", expansion_samples, integer=True)
    phi, dphi, d2phi, d3phi = net.numpy_derivatives(3)
    run = (population, phi, dphi, grid.eta, net.gamma0, grid.steps, net.center)
    with np.errstate(over="ignore", invalid="ignore"):    # divergence is raised by forward
        curve_particles = Particles.sample(population.dim, samples, seed, sampler)
        curve = forward(curve_particles, *run)
        particles = Particles.sample(population.dim, expansion_samples, seed, sampler)
        traj = curve if expansion_samples == samples else forward(particles, *run)
    P = [np.ascontiguousarray(fn(traj.H)) for fn in (phi, dphi, d2phi, d3phi)]
    args = (population.X, population.rho, population.y, traj.f, *P, traj.A, particles.pi,
            grid.eta, net.gamma0, net.center)
    stats = _expand(args, particles.pi, population.rho, traj, progress)
    params = {**net.describe(), **population.describe(), "eta": grid.eta, "steps": grid.steps,
              "samples": curve_particles.pi.shape[0], "expansion_samples": particles.pi.shape[0],
              "seed": seed,
              "sampler": particles.method}
    return OnlineResult(grid.t, curve.f, curve.loss, *stats, population.X, population.rho,
                        population.y, params)


def _expand(args, pi, rho, traj, progress):
    """Sum the per-particle responses into N Var / N bias of outputs and loss (expansion.py)."""
    M = pi.shape[0]
    threads = numba.get_num_threads()
    bounds = np.linspace(0, M, 8 * threads + 1).astype(int)
    delta = args[2][None, :] - traj.f
    f_var = np.zeros_like(traj.f)
    f_bias = np.zeros_like(traj.f)
    dL = np.zeros((M, traj.f.shape[0]))
    d2L = np.zeros_like(dL)
    bar = tqdm(total=M, desc="expansion", unit="particle", disable=not show_progress(progress))
    with ThreadPoolExecutor(threads) as pool:
        jobs = [(i0, i1, pool.submit(directions, i0, i1, *args))
                for i0, i1 in zip(bounds[:-1], bounds[1:]) if i1 > i0]
        for i0, i1, job in jobs:
            dF, d2F = job.result()
            w = pi[i0:i1, None, None]
            f_var += np.sum(w * dF ** 2, axis=0)
            f_bias += 0.5 * np.sum(w * d2F, axis=0)
            dL[i0:i1] = -np.einsum("ikq,kq,q->ik", dF, delta, rho)
            d2L[i0:i1] = np.einsum("ikq,q->ik", dF ** 2 - delta[None] * d2F, rho)
            bar.update(i1 - i0)
    bar.close()
    loss_cov = (pi[:, None] * dL).T @ dL
    loss_bias = 0.5 * pi @ d2L
    return f_var, f_bias, loss_cov, loss_bias
