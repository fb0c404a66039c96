"""The mean-field particle system of online learning (docs/online_learning.md §2).

A two-layer network of width N is the empirical measure of its N neurons ("particles")
``z_j = (w_j, a_j)``: input weights w_j in R^D and readout a_j. On population GD every
particle moves in the field of the whole measure through the residual Delta(x) only:

    h_j(x)  = w_j . x / sqrt(D),        f(x) = (1/gamma0) sum_j pi_j a_j phi(h_j(x))
    w_j    += (eta gamma0 / sqrt(D)) a_j E_x[Delta(x) phi'(h_j(x)) x]
    a_j    += eta gamma0 E_x[Delta(x) phi(h_j(x))]

with ``pi_j = 1/N`` for a network (THEORY.md §1 with the sum over data replaced by E_x). The
same code with a quadrature rule (pi_j, z_j) of the initial N(0, I) law is the infinite-width
dynamics. ``forward`` steps it and keeps the preactivations for the expansion passes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..runtime.samplers import make_rule


@dataclass(eq=False)
class Particles:
    """Initial particles: input weights ``W`` (M, D), readouts ``a`` (M,), weights ``pi`` (M,)."""
    W: np.ndarray
    a: np.ndarray
    pi: np.ndarray
    method: str

    @classmethod
    def sample(cls, dim: int, samples: int, seed: int, sampler: str) -> "Particles":
        """A rule for z ~ N(0, I_{dim+1}) drawn by ``sampler`` (``runtime.samplers.make_rule``)."""
        rule = make_rule(dim + 1, samples, seed, sampler)
        return cls(np.ascontiguousarray(rule.zeta[:, :dim]), np.ascontiguousarray(rule.zeta[:, dim]),
                   rule.weights, rule.method)


@dataclass(eq=False)
class Trajectory:
    """The particle system at steps 0..T: preactivations ``H`` (T+1, M, Q) on the population's
    nodes, readouts ``A`` (T+1, M), outputs ``f`` (T+1, Q) and population loss (T+1,)."""
    H: np.ndarray
    A: np.ndarray
    f: np.ndarray
    loss: np.ndarray


def forward(particles: Particles, population, phi, dphi, eta: float, gamma0: float, steps: int,
            center: bool = False) -> Trajectory:
    """Population GD of the particle system (module docstring); all updates from step-k state.

    With ``center`` the output is ``f(t) - f(0)`` (initial network frozen, THEORY.md §1).
    Raises ``FloatingPointError`` naming the step where the outputs become non-finite.
    """
    X, rho, y = population.X, population.rho, population.y
    sqrt_d = np.sqrt(population.dim)
    W, a, pi = particles.W.copy(), particles.a.copy(), particles.pi
    M, Q = W.shape[0], X.shape[0]
    H = np.empty((steps + 1, M, Q))
    A = np.empty((steps + 1, M))
    f = np.empty((steps + 1, Q))
    f0 = 0.0
    for k in range(steps + 1):
        H[k] = W @ X.T / sqrt_d
        A[k] = a
        act = phi(H[k])
        f[k] = (pi * a) @ act / gamma0
        if k == 0 and center:
            f0 = f[0].copy()
        f[k] -= f0
        if not np.all(np.isfinite(f[k])):
            raise FloatingPointError(
                f"the online dynamics diverged at step {k} (eta = {eta}); lower eta")
        if k == steps:
            break
        r = rho * (y - f[k])
        W += (eta * gamma0 / sqrt_d) * a[:, None] * ((dphi(H[k]) * r) @ X)
        a = a + eta * gamma0 * (act @ r)
    loss = 0.5 * ((y[None, :] - f) ** 2) @ rho
    return Trajectory(H, A, f, loss)
