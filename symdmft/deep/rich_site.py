"""Paths of one layer's single-site process in discrete time (THEORY.md §2).

For a hidden layer l the site fields over (time t, point mu) obey, with the memory kernels

    CA^l(t, s) = gamma0 [A^{l-1}(t, s) + eta 1[s<t] Delta(s) Phi^{l-1}(t, s)]     (s < t)
    CB^l(t, s) = gamma0 [B^l(t, s)     + eta 1[s<t] Delta(s) G^{l+1}(t, s)]       (s <= t)

(Delta(s) multiplies the column point; it is zero on test points), the recursion

    h(t) = u(t) + sum_{s<t}  CA(t, s) g(s)
    z(t) = r(t) + sum_{s<=t} CB(t, s) phi(h(s))
    g(t) = phi'(h(t)) z(t).

Layers are independent given the order parameters: a site of layer l only sees its own
sources (u^l, r^l) and the kernels above. Within a step h(t) needs only the past, and z(t)
only h(t) and the past, so every layer advances explicitly (``advance_h`` then
``advance_z``). ``MemoryKernels`` builds CA and CB row by row as the frontier advances.
"""
from __future__ import annotations

import numpy as np


# The products here have an inner or outer dimension of P (a few points): einsum's own loops,
# not BLAS. OpenBLAS threads that spin between calls compete with the Numba threads of the
# response sweeps on a busy machine (measured 2-3x slower overall with matmul).


class LayerPaths:
    """h, z, phi(h), g of one layer for n sites, (n, steps+1, P) each, filled causally.

    ``dphi`` = phi'(h) and ``ddphi_z`` = phi''(h) z are kept too: they are the diagonal
    factors of the tangent equations, needed by every response sweep (``rich_responses``).
    """

    def __init__(self, n: int, steps: int, P: int, functions):
        shape = (n, steps + 1, P)
        self.h, self.z, self.phi, self.g, self.dphi, self.ddphi_z = (np.zeros(shape) for _ in range(6))
        self.functions = functions

    @property
    def n(self) -> int:
        return self.h.shape[0]

    def advance_h(self, t: int, u: np.ndarray, CA: np.ndarray) -> None:
        """h(t) = u(t) + sum_{s<t} CA(t, s) g(s); ``CA`` (steps+1, P, steps+1, P)."""
        P = u.shape[1]
        h = u.copy()
        if t > 0:
            h += np.einsum("nk,pk->np", self.g[:, :t].reshape(self.n, t * P), CA[t, :, :t].reshape(P, t * P))
        self.h[:, t] = h
        self.phi[:, t] = self.functions[0](h)
        self.dphi[:, t] = self.functions[1](h)

    def advance_z(self, t: int, r: np.ndarray, CB: np.ndarray) -> None:
        """z(t) = r(t) + sum_{s<=t} CB(t, s) phi(h(s)), then g(t) = phi'(h(t)) z(t)."""
        P = self.h.shape[2]
        n1 = (t + 1) * P
        z = r + np.einsum("nk,pk->np", self.phi[:, :t + 1].reshape(self.n, n1), CB[t, :, :t + 1].reshape(P, n1))
        self.z[:, t] = z
        self.g[:, t] = self.dphi[:, t] * z
        self.ddphi_z[:, t] = self.functions[2](self.h[:, t]) * z

    def derivative_factors(self, sites: slice):
        """phi'(h) and phi''(h) z on ``sites``: the diagonal factors of the tangent equations."""
        return self.dphi[sites], self.ddphi_z[sites]


def weighted_gram(weights: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """<a b^T> = sum_i w_i a_i b_i^T for a (n, P), b (n, S, P) -> (P, S, P)."""
    n, S, P = b.shape
    return np.einsum("np,nk->pk", a * weights[:, None], b.reshape(n, S * P)).reshape(a.shape[1], S, P)


class MemoryKernels:
    """CA^l, CB^l for l = 1..L (index l-1), (steps+1, P, steps+1, P) each, filled by rows."""

    def __init__(self, L: int, steps: int, P: int, gamma0: float, eta: float):
        shape = (steps + 1, P, steps + 1, P)
        self.CA = [np.zeros(shape) for _ in range(L)]
        self.CB = [np.zeros(shape) for _ in range(L)]
        self.gamma0, self.eta = gamma0, eta

    def set_A_row(self, l: int, t: int, Phi_prev: np.ndarray, A_prev, delta: np.ndarray) -> None:
        """Row t of CA^l from Phi^{l-1}(t, s<t) (P, t, P), A^{l-1} (same; None for l = 1), Delta (t, P)."""
        row = self.eta * Phi_prev * delta[None, :, :]
        if A_prev is not None:
            row = row + A_prev
        self.CA[l - 1][t, :, :t] = self.gamma0 * row

    def set_B_row(self, l: int, t: int, G_next: np.ndarray, B_here, delta: np.ndarray) -> None:
        """Row t of CB^l from G^{l+1}(t, s<t) (P, t, P), B^l(t, s<=t) (P, t+1, P; None for l = L)."""
        row = np.zeros(G_next.shape[:1] + (t + 1,) + G_next.shape[2:])
        row[:, :t] = self.eta * G_next * delta[None, :, :]
        if B_here is not None:
            row = row + B_here
        self.CB[l - 1][t, :, :t + 1] = self.gamma0 * row
