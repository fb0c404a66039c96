"""One dense Gauss-Seidel sweep of the deep linear saddle map (THEORY.md §2, "Deep linear networks").

Given Delta (inside ``wd = eta Theta Delta``, the strictly-lower mask times eta Delta_a(s)) and
the current kernels, the sweep recomputes every layer on whole ((steps+1) P_all)^2 matrices:
forward Phi^l, A^l (ascending l), then backward G^l, B^{l-1} (descending l), then f by the
correlator rule. ``linear_rich`` builds the saddle row by row (causal frontier) and applies
this sweep once to the result: a second, independent implementation of the same equations,
whose change is the reported residual (zero up to rounding at the fixed point).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular


def layer_inputs(l: int, L: int, Phi, G, A, B, Phi0, Gtop):
    """(Phi^{l-1}, G^{l+1}, A^{l-1} or None, B^l or None) of layer l (1-based), boundaries included."""
    below = Phi0 if l == 1 else Phi[l - 2]
    above = Gtop if l == L else G[l]
    Ab = None if (l == 1 or not A) else A[l - 2]
    Bb = None if (l == L or not B) else B[l - 1]
    return below, above, Ab, Bb


def _memory(wd, R, X):
    """C^l = A^{l-1} + eta Theta Delta Phi^{l-1} or E^l = B^l + eta Theta Delta G^{l+1}."""
    return X * wd if R is None else R + X * wd


def _solver(g0, C, E):
    """X -> (I - gamma0^2 C E)^{-1} X: unit lower triangular (C, E strictly causal)."""
    lhs = np.eye(C.shape[0]) - g0**2 * (C @ E)
    return lambda X: solve_triangular(lhs, X, lower=True, unit_diagonal=True, check_finite=False)


def dense_sweep(g0: float, wd, Phi0, Gtop, Phi, G, A, B, responses: bool = True) -> np.ndarray:
    """Update Phi, G (and A, B if ``responses``) in place by one sweep; return f (flattened)."""
    L = len(Phi)
    for l in range(1, L + 1):
        below, above, Ab, Bb = layer_inputs(l, L, Phi, G, A, B, Phi0, Gtop)
        C, E = _memory(wd, Ab, below), _memory(wd, Bb, above)
        M = _solver(g0, C, E)
        Phi[l - 1][...] = M(M(below + g0**2 * C @ above @ C.T).T)
        if l < L and responses:
            A[l - 1][...] = M(C)
    for l in range(L, 0, -1):
        below, above, Ab, Bb = layer_inputs(l, L, Phi, G, A, B, Phi0, Gtop)
        C, E = _memory(wd, Ab, below), _memory(wd, Bb, above)
        Nn = _solver(g0, E, C)
        G[l - 1][...] = Nn(Nn(above + g0**2 * E @ below @ E.T).T)
        if l > 1 and responses:
            B[l - 2][...] = Nn(E)
        if l == L:  # correlator rule: f = gamma0^{-1} <g^L h^L> = diag M (Phi E^T + C G) N^T
            cross = _solver(g0, C, E)(below @ E.T + C @ above)
            f = np.diag(Nn(cross.T))
    return f
