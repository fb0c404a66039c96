"""One layer of the deep linear saddle map, its tangent (JVP) and its adjoint (VJP) (THEORY.md §2).

Layer l of a deep linear net sees X = Phi^{l-1}, Y = G^{l+1}, the incoming responses Ab =
A^{l-1}, Bb = B^l and W = eta Theta Delta, and returns

    C = Ab + X o W,  E = Bb + Y o W,  M = (I - g^2 C E)^{-1},  N = (I - g^2 E C)^{-1}
    Phi^l = M S M^T, S = X + g^2 C Y C^T;     G^l = N R N^T, R = Y + g^2 E X E^T
    A^l = M C,  B^{l-1} = N E,  f = diag M Q N^T, Q = X E^T + C Y   (g = gamma0)

The values (C .. Q above), ``jvp``, the forward-mode derivative (d(M) = g^2 M (dC E + C dE) M),
and ``vjp``, its exact transpose (for d = P dZ Q the adjoint is P^T d Q^T), are all derived by
SymPy from the layer's matrix program (``deep.linear_program``, ``expand.matrix_calculus``) into
generated/deep_linear_layer.py, batched over a leading axis of directions. The matrix-free
propagator needs the adjoint (``deep.linear_matrix_free``); the dense Jacobian D the tangent.
"""
from __future__ import annotations

import numpy as np


class LinearLayer:
    """The matrices of one layer at a point (X, Y, Ab, Bb, W); Ab, Bb may be 0.0 (absent)."""

    def __init__(self, g0, X, Y, Ab, Bb, W):
        self.g0, self.g2 = g0, g0**2
        self.X, self.Y, self.W = X, Y, W
        self.C, self.E, self.M, self.N, self.S, self.R, self.Q = _generated().values(g0, X, Y, Ab, Bb, W)

    def fields(self):
        """<h h^T>, <g g^T>, <h g^T> of the layer's (Gaussian) site."""
        M, N = self.M, self.N
        return M @ self.S @ M.T, N @ self.R @ N.T, self.g0 * M @ self.Q @ N.T

    def _base(self):
        return (self.g0, self.X, self.Y, self.W, self.C, self.E, self.M, self.N, self.S, self.R, self.Q)

    def jvp(self, dX, dY, dAb, dBb, dW):
        """Tangents (dPhi, dG, d(M C), d(N E), d diag(M Q N^T)) along (dX, dY, dAb, dBb, dW)."""
        dPhi, dG, dA, dB, dF = _generated().jvp(*self._base(), dX, dY, dAb, dBb, dW)
        return dPhi, dG, dA, dB, np.diagonal(dF, axis1=-2, axis2=-1)

    def vjp(self, bPhi, bG, bA, bB, bf):
        """The transpose of ``jvp``: cotangents of its five outputs (k, n, n) x 4 and (k, n)
        -> cotangents of (X, Y, Ab, Bb, W), each (k, n, n)."""
        bF = bf[..., :, None] * np.eye(bf.shape[-1])                    # diag embedding
        return _generated().vjp(*self._base(), bPhi, bG, bA, bB, bF)


def _generated():
    """generated/deep_linear_layer.py (``symdmft generate``; tests check it is current)."""
    import importlib
    return importlib.import_module("generated.deep_linear_layer")
