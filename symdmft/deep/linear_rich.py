"""Deep linear networks in the rich regime: the infinite-width saddle in closed form (THEORY.md §2).

For phi(h) = h the site process of layer l is Gaussian and linear (THEORY.md §2, "Deep linear
networks"; arXiv 2205.09653 eqs. 11-12). On the flattened index (t, mu), t = 0..steps, mu over
all P_all points (train then test; test points carry zero weight in the loss),

    C^l = A^{l-1} + eta Theta Delta Phi^{l-1},     E^l = B^l + eta Theta Delta G^{l+1}
    (I - gamma0^2 C E) h = u + gamma0 C r,         (I - gamma0^2 E C) g = r + gamma0 E u
    Phi^l = M S M^T,  S = Phi^{l-1} + gamma0^2 C G^{l+1} C^T,   M = (I - gamma0^2 C E)^{-1}
    G^l   = N R N^T,  R = G^{l+1} + gamma0^2 E Phi^{l-1} E^T,   N = (I - gamma0^2 E C)^{-1}
    A^l = M C,   B^{l-1} = N E,   f(t) = gamma0^{-1} <g^L h^L> = diag M (Phi^{L-1} E^T + C G^{L+1}) N^T

with ``(eta Theta Delta X)[(t,mu),(s,a)] = eta 1[s<t] Delta_a(s) X_{mu a}(t,s)`` (strictly
earlier steps), Phi^0 = Kx, G^{L+1} = 1, A^0 = B^L = 0. For linear nets B has no equal-time
part (phi''(h) z = 0), so C, E are strictly block lower triangular in time and M, N are unit
lower triangular: M = I + gamma0^2 C E M fixes row t of M from C's row t and earlier rows.

Causal frontier: time row k of every object needs Delta(s < k) and rows < k only. Row k of
the forward chain (C, M, S, Phi, A; ascending l) and of the backward chain (E, N, R, G, B;
descending l) are computed, then f(k) and Delta(k) = y - f(k): the saddle is exact after one
pass (cost ~ steps * L * P_all (steps P_all)^2). One dense sweep of the whole map
(``linear_sweep``, an independent implementation) then measures the residual.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..arch.activations import h as _h
from ..arch.mlp import MLP
from ..problem import Data, TimeGrid
from .linear_sweep import dense_sweep, layer_inputs
from .rich_result import RichResult


def check_linear_inputs(net, data, grid) -> None:
    """TypeError / ValueError naming the parameter unless (net, data, grid) is a deep linear problem."""
    for name, value, kind in (("net", net, MLP), ("data", data, Data), ("grid", grid, TimeGrid)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a symdmft {kind.__name__}, got {type(value).__name__}")
    if sp.expand(net.activation - _h) != 0:
        raise ValueError(f"net.activation must be linear (phi(h) = h) for the closed-form deep "
                         f"linear solver, got {net.activation_name!r}")


class _Frontier:
    """Kernels, responses and the per-layer C, E, M, N, S, R as ((steps+1) P_all)^2 arrays."""

    def __init__(self, L, n, p, g0, Kx, responses):
        z = lambda: np.zeros((n, n))  # noqa: E731
        self.L, self.p, self.g2 = L, p, g0**2
        self.Phi0, self.Gtop = np.tile(Kx, (n // p, n // p)), np.ones((n, n))
        self.Phi, self.G = [z() for _ in range(L)], [z() for _ in range(L)]
        self.A = [z() for _ in range(L - 1)] if responses else []
        self.B = [z() for _ in range(L - 1)] if responses else []
        self.C, self.E, self.M, self.N, self.S, self.R = ([z() for _ in range(L)] for _ in range(6))

    def inputs(self, l):
        return layer_inputs(l, self.L, self.Phi, self.G, self.A, self.B, self.Phi0, self.Gtop)

    def _row(self, k, wd, Ab, X, C, E, M, S, out, resp, other):
        """Row k of one chain: C (or E), M (or N), S (or R), the kernel, the response."""
        p, g2 = self.p, self.g2
        r, b, q = slice(k * p, (k + 1) * p), k * p, (k + 1) * p
        Crow = wd[r, :b] * X[r, :b] + (0 if Ab is None else Ab[r, :b])
        C[r, :b] = Crow
        Mrow = g2 * (Crow @ E[:b, :b]) @ M[:b, :q]
        Mrow[:, b:q] += np.eye(p)
        M[r, :q] = Mrow
        Srow = X[r, :q] + g2 * (Crow @ other[:b, :b]) @ C[:q, :b].T
        S[r, :q], S[:q, r] = Srow, Srow.T
        Krow = (Mrow @ S[:q, :q]) @ M[:q, :q].T
        out[:q, r], out[r, :q] = Krow.T, Krow
        if resp is not None:
            resp[r, :b] = Mrow @ C[:q, :b]

    def ntk(self, k):
        """K(k) = sum_{l=0..L} G^{l+1}(k,k) * Phi^l(k,k) on all points (THEORY.md §1)."""
        r = slice(k * self.p, (k + 1) * self.p)
        K = self.Phi[-1][r, r] + self.G[0][r, r] * self.Phi0[r, r]
        return K + sum(self.G[l][r, r] * self.Phi[l - 1][r, r] for l in range(1, self.L))

    def step(self, k, wd):
        """Fill time row k of everything (needs Delta(s < k) in ``wd``); return f(k)."""
        L, q = self.L, (k + 1) * self.p
        for l in range(1, L + 1):
            below, above, Ab, _ = self.inputs(l)
            resp = self.A[l - 1] if (l < L and self.A) else None
            self._row(k, wd, Ab, below, self.C[l - 1], self.E[l - 1], self.M[l - 1],
                      self.S[l - 1], self.Phi[l - 1], resp, above)
        for l in range(L, 0, -1):
            below, above, _, Bb = self.inputs(l)
            resp = self.B[l - 2] if (l > 1 and self.B) else None
            self._row(k, wd, Bb, above, self.E[l - 1], self.C[l - 1], self.N[l - 1],
                      self.R[l - 1], self.G[l - 1], resp, below)
        r = slice(k * self.p, q)   # correlator rule at (k, k), top layer's M and N rows
        Mrow, Nrow = self.M[L - 1][r, :q], self.N[L - 1][r, :q]
        below, above = self.inputs(L)[:2]
        C, E = self.C[L - 1][:q, :q], self.E[L - 1][:q, :q]
        MPhi = Mrow @ below[:q, :q]
        return (np.einsum("ij,ij->i", MPhi, Nrow @ E)
                + np.einsum("ij,ij->i", (Mrow @ C) @ above[:q, :q], Nrow))


def solve_linear_rich(net: MLP, data: Data, grid: TimeGrid, responses: bool = True) -> RichResult:
    """Infinite-width kernels, responses and predictions of a deep linear net (THEORY.md §2).

    Any ``hidden_layers >= 1`` (L = 1 has no responses and reproduces O1), discrete gradient
    descent on ``grid``. ``responses=False`` sets A = B = 0: the gradient-independence
    approximation, kept only as an ablation (it is wrong for L >= 2, THEORY.md O8). Its
    predictions follow the NTK, f(k+1) = f(k) + eta K(k) Delta(k): without the responses the
    correlator rule is not even consistent with K at O(1) (for small gamma0 it gives
    f = 2 int Delta instead of (L+1) int Delta, one input, x.x/D = 1).
    Centring does not change the infinite-width means (f(0) = 0 at N = infinity).
    Raises ``FloatingPointError`` if the saddle diverges (eta too large).
    """
    check_linear_inputs(net, data, grid)
    L, g0, eta, steps = net.hidden_layers, net.gamma0, grid.eta, grid.steps
    P, p, T1 = data.P, data.P_all, grid.steps + 1
    n = T1 * p
    st = _Frontier(L, n, p, g0, data.Kx_all, responses)
    lower = np.kron(np.tril(np.ones((T1, T1)), -1), np.ones((p, p)))  # 1[s < t]
    dvec, f = np.zeros((T1, p)), np.zeros((T1, p))
    wd = np.zeros((n, n))
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(T1):
            f[k] = st.step(k, wd)
            if not responses and k > 0:  # the correlator rule needs A, B: NTK Euler step instead
                f[k] = f[k - 1] + eta * st.ntk(k - 1)[:, :P] @ dvec[k - 1, :P]
            if not np.all(np.isfinite(f[k])):
                raise FloatingPointError(f"deep linear saddle diverged at step {k} "
                                         f"(t = {k * eta:.6g}); reduce eta (now {eta:g})")
            dvec[k, :P] = data.y - f[k, :P]
            wd[:, k * p:(k + 1) * p] = lower[:, k * p:(k + 1) * p] * (eta * dvec[k])
    objects = [*st.Phi, *st.G, *st.A, *st.B]
    old = [x.copy() for x in objects]
    f_check = dense_sweep(g0, wd, st.Phi0, st.Gtop, st.Phi, st.G, st.A, st.B, responses)
    residual = max([float(np.max(np.abs(a - b))) for a, b in zip(old, objects)]
                   + [float(np.max(np.abs(f_check.reshape(T1, p) - f))) if responses else 0.0])
    shape = (T1, p, T1, p)
    params = {**net.describe(), **data.describe(), "eta": eta, "steps": steps,
              "solver": "deep linear closed form" + ("" if responses else " (A = B = 0 ablation)")}
    convergence = {"iterations": 1, "residual": residual,
                   "reason": "causal frontier: one pass over the time rows is exact; residual = "
                             "change under one dense sweep of the saddle map"}
    zeros = [np.zeros(shape) for _ in range(L - 1)]
    return RichResult(t=grid.t, f=f, Phi=[x.reshape(shape) for x in old[:L]],
                      G=[x.reshape(shape) for x in old[L:2 * L]],
                      A=[x.reshape(shape) for x in st.A] or zeros,
                      B=[x.reshape(shape) for x in st.B] or [z.copy() for z in zeros],
                      y=data.y.copy(), Kx=data.Kx_all, convergence=convergence, params=params,
                      y_test=data.y_test)
