"""One layer of the deep linear saddle map, its tangent (JVP) and its adjoint (VJP) (THEORY.md §2).

Layer l of a deep linear net sees X = Phi^{l-1}, Y = G^{l+1}, the incoming responses Ab =
A^{l-1}, Bb = B^l and W = eta Theta Delta, and returns

    C = Ab + X o W,  E = Bb + Y o W,  M = (I - g^2 C E)^{-1},  N = (I - g^2 E C)^{-1}
    Phi^l = M S M^T, S = X + g^2 C Y C^T;     G^l = N R N^T, R = Y + g^2 E X E^T
    A^l = M C,  B^{l-1} = N E,  f = diag M Q N^T, Q = X E^T + C Y   (g = gamma0)

``jvp`` is the forward-mode derivative (d(M) = g^2 M (dC E + C dE) M) and ``vjp`` its exact
transpose, written out product by product (for d = P dZ Q the adjoint is P^T d Q^T); both
are batched over a leading axis of directions. The matrix-free propagator needs the adjoint
(``deep.linear_matrix_free``); the dense Jacobian D uses the tangent.
"""
from __future__ import annotations

import numpy as np


def _T(Z):
    return np.swapaxes(Z, -1, -2)


class LinearLayer:
    """The matrices of one layer at a point (X, Y, Ab, Bb, W); Ab, Bb may be 0.0 (absent)."""

    def __init__(self, g0, X, Y, Ab, Bb, W):
        n = X.shape[0]
        self.g0, self.g2 = g0, g0**2
        self.X, self.Y, self.W = X, Y, W
        self.C, self.E = Ab + X * W, Bb + Y * W
        C, E, g2 = self.C, self.E, self.g2
        self.M = np.linalg.inv(np.eye(n) - g2 * C @ E)
        self.N = np.linalg.inv(np.eye(n) - g2 * E @ C)
        self.S, self.R = X + g2 * C @ Y @ C.T, Y + g2 * E @ X @ E.T
        self.Q = X @ E.T + C @ Y

    def fields(self):
        """<h h^T>, <g g^T>, <h g^T> of the layer's (Gaussian) site."""
        M, N = self.M, self.N
        return M @ self.S @ M.T, N @ self.R @ N.T, self.g0 * M @ self.Q @ N.T

    def jvp(self, dX, dY, dAb, dBb, dW):
        """Tangents (dPhi, dG, d(M C), d(N E), d diag(M Q N^T)) along (dX, dY, dAb, dBb, dW)."""
        g2, X, Y, C, E, M, N = self.g2, self.X, self.Y, self.C, self.E, self.M, self.N
        S, R, Q = self.S, self.R, self.Q
        dC, dE = dAb + dX * self.W + X * dW, dBb + dY * self.W + Y * dW
        dM = g2 * M @ (dC @ E + C @ dE) @ M
        dN = g2 * N @ (dE @ C + E @ dC) @ N
        dS = dX + g2 * (dC @ Y @ C.T + C @ dY @ C.T + C @ Y @ _T(dC))
        dR = dY + g2 * (dE @ X @ E.T + E @ dX @ E.T + E @ X @ _T(dE))
        dPhi = dM @ S @ M.T + M @ dS @ M.T + M @ S @ _T(dM)
        dG = dN @ R @ N.T + N @ dR @ N.T + N @ R @ _T(dN)
        dQ = dX @ E.T + X @ _T(dE) + dC @ Y + C @ dY
        dF = dM @ Q @ N.T + M @ dQ @ N.T + M @ Q @ _T(dN)
        return dPhi, dG, dM @ C + M @ dC, dN @ E + N @ dE, np.diagonal(dF, axis1=-2, axis2=-1)

    def vjp(self, bPhi, bG, bA, bB, bf):
        """The transpose of ``jvp``: cotangents of its five outputs (k, n, n) x 4 and (k, n)
        -> cotangents of (X, Y, Ab, Bb, W), each (k, n, n)."""
        g2, X, Y, C, E, M, N = self.g2, self.X, self.Y, self.C, self.E, self.M, self.N
        S, R, Q = self.S, self.R, self.Q
        bF = bf[..., :, None] * np.eye(bf.shape[-1])                    # diag embedding
        bM = (bPhi + _T(bPhi)) @ (M @ S) + bF @ (N @ Q.T) + bA @ C.T
        bN = (bG + _T(bG)) @ (N @ R) + bF @ (M @ Q) + bB @ E.T
        bS, bR, bQ = M.T @ bPhi @ M, N.T @ bG @ N, M.T @ bF @ N
        KM, KN = g2 * M.T @ bM @ M.T, g2 * N.T @ bN @ N.T               # through dM, dN
        bC = (M.T @ bA + bQ @ Y + g2 * (bS + _T(bS)) @ (C @ Y) + KM @ E.T + E.T @ KN)
        bE = (N.T @ bB + _T(bQ) @ X + g2 * (bR + _T(bR)) @ (E @ X) + C.T @ KM + KN @ C.T)
        bX = bS + bQ @ E + g2 * E.T @ bR @ E + bC * self.W
        bY = bR + C.T @ bQ + g2 * C.T @ bS @ C + bE * self.W
        return bX, bY, bC, bE, bC * X + bE * Y
