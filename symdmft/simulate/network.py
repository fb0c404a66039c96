"""A chunk of C finite-width MLPs trained side by side (THEORY.md §1).

Everything is batched over the leading network axis; data points sit on the next axis
and neurons last, so each layer is one batched matmul. Shapes, for C networks of width N:
``W[0]`` (C, N, D) is W^0, ``W[l]`` (C, N, N) is W^l for l = 1..L-1, ``w`` (C, N) the readout;
pre-activations ``h[l-1]`` (C, P_all, N) hold h^l, backward fields ``g[l-1]`` (C, P, N) hold
g^l on the training points only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Forward:
    """One forward pass: ``h``, ``a = phi(h)`` per hidden layer and the raw output ``f`` (C, P_all)."""
    h: list
    a: list
    f: np.ndarray


class NetworkBatch:
    """C independently initialised networks of one architecture ``net`` (an ``MLP``)."""

    def __init__(self, net, W: list, w: np.ndarray):
        self.net, self.W, self.w = net, W, w
        self.width = w.shape[1]
        self.phi, self.dphi = net.numpy_functions()

    @classmethod
    def initialise(cls, net, width: int, input_dim: int, rngs) -> "NetworkBatch":
        """All weights i.i.d. N(0, 1), each network drawn from its own generator in ``rngs``.

        Per network the draw order is W^0, W^1, ..., W^{L-1}, w, so a network's weights
        depend only on its generator and not on the chunk it lands in.
        """
        L, N = net.hidden_layers, width
        shapes = [(N, input_dim)] + [(N, N)] * (L - 1) + [(N,)]
        draws = [[rng.standard_normal(s) for s in shapes] for rng in rngs]
        W = [np.stack([d[l] for d in draws]) for l in range(L)]
        w = np.stack([d[L] for d in draws])
        return cls(net, W, w)

    @staticmethod
    def nbytes_per_network(net, width: int, input_dim: int, points: int) -> int:
        """Float64 bytes per network: weights (twice, for the update's temporaries) and fields."""
        L, N = net.hidden_layers, width
        weights = N * input_dim + (L - 1) * N * N + N
        fields = 4 * L * points * N  # h, phi(h), phi'(h), g
        return 8 * (2 * weights + fields)

    def forward(self, X: np.ndarray) -> Forward:
        """h^1 = W^0 x / sqrt(D), h^{l+1} = W^l phi(h^l) / sqrt(N), f = w . phi(h^L) / (gamma0 N)."""
        N, D = self.width, X.shape[1]
        h = [np.matmul(X, self.W[0].transpose(0, 2, 1)) / np.sqrt(D)]
        a = [self.phi(h[0])]
        for Wl in self.W[1:]:
            # einsum, not matmul on a transposed stack: NumPy's stacked matmul leaves BLAS
            # for such strides above N ~ 400 (128 ms vs 2.5 ms per 16 networks at N = 512)
            h.append(np.einsum("cpn,cmn->cpm", a[-1], Wl, optimize=True) / np.sqrt(N))
            a.append(self.phi(h[-1]))
        f = np.matmul(a[-1], self.w[:, :, None])[:, :, 0] / (self.net.gamma0 * N)
        return Forward(h, a, f)

    def backward(self, fwd: Forward, P: int) -> list:
        """g^l = phi'(h^l) * z^l on the first P (training) points; z^L = w, z^l = W^l^T g^{l+1} / sqrt(N)."""
        L, N = self.net.hidden_layers, self.width
        g = [None] * L
        g[L - 1] = self.dphi(fwd.h[L - 1][:, :P]) * self.w[:, None, :]
        for l in range(L - 1, 0, -1):  # g^l from g^{l+1} through W^l
            z = np.matmul(g[l], self.W[l]) / np.sqrt(N)
            g[l - 1] = self.dphi(fwd.h[l - 1][:, :P]) * z
        return g

    def kernels(self, fwd: Forward, g: list, Kx: np.ndarray) -> dict:
        """Equal-time Phi^l, G^l (l = 1..L) and K = sum_{l=0..L} G^{l+1} * Phi^l on the training points."""
        L, N, P = self.net.hidden_layers, self.width, Kx.shape[0]
        gram = lambda x: np.matmul(x, x.transpose(0, 2, 1)) / N  # noqa: E731
        Phi = [gram(a[:, :P]) for a in fwd.a]
        G = [gram(gl) for gl in g]
        K = G[0] * Kx + Phi[L - 1]  # l = 0 (G^1 Kx) and l = L (G^{L+1} = 1)
        for l in range(1, L):
            K = K + G[l] * Phi[l - 1]
        out = {"K": K}
        out.update({f"Phi{l + 1}": Phi[l] for l in range(L)})
        out.update({f"G{l + 1}": G[l] for l in range(L)})
        return out

    def update(self, fwd: Forward, g: list, delta: np.ndarray, X: np.ndarray, eta: float) -> None:
        """One simultaneous gradient step in place (THEORY.md §1); ``delta`` (C, P), ``X`` (P, D).

        Every increment is built from ``fwd`` and ``g``, i.e. from the parameters before the step.
        """
        gamma0, N, D = self.net.gamma0, self.width, X.shape[1]
        P = delta.shape[1]
        a = [al[:, :P] for al in fwd.a]
        # eta gamma0 Delta_mu g^l_mu, scaled while small so the (N, N) increments need no extra pass
        dg = [(eta * gamma0) * gl * delta[:, :, None] for gl in g]
        self.w += (eta * gamma0) * np.matmul(delta[:, None, :], a[-1])[:, 0, :]
        for l in range(1, len(self.W)):
            self.W[l] += np.einsum("cpn,cpm->cnm", dg[l], a[l - 1] / np.sqrt(N), optimize=True)
        self.W[0] += np.matmul(dg[0].transpose(0, 2, 1), X / np.sqrt(D))
