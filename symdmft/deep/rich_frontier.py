"""The saddle of the deep site process by advancing the time frontier (THEORY.md §2).

Causality makes the saddle explicit. At step t, with every order parameter at earlier steps
known:

* forward, l = 1..L: u^l(t) needs Phi^{l-1}(t, s <= t) (just computed by layer l-1), h^l(t)
  needs A^{l-1}(t, s < t), Phi^{l-1}(t, s < t) and Delta(s < t); then Phi^l(t, .) and
  A^l(t, .) (a backward sweep of layer l from phi(h^l(t)));
* f(t) = gamma0^{-1} <w(t) phi(h^L(t))> (the correlator rule), since w(t) = z^L(t) needs
  only the past;
* backward, l = L..1: r^l(t) needs G^{l+1}(t, s <= t), z^l(t) needs B^l(t, s <= t) (the
  equal-time part included, from the sweep of layer l+1 just done) and G^{l+1}(t, s < t);
  then G^l(t, .) and B^{l-1}(t, .) (a sweep of layer l from g^l(t)).

Each order parameter is estimated once, from paths that never change afterwards, so one pass
is the fixed point of "sample sources, integrate, re-estimate" for the given sources (common
random numbers). ``run_frontier(..., frozen=q)`` replays the process driven by given order
parameters instead and re-estimates them: the residual of that replay is the fixed-point
residual ``|F(q) - q|`` (``rich.py`` reports it). The source factors are always built from the
paths whose Gram matrices define Phi^{l-1} and G^{l+1} (``rich_sources``); in a replay those
paths coincide with the frozen kernels' to rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..progress import show_progress
from .rich_responses import site_response
from .rich_site import LayerPaths, MemoryKernels, weighted_gram
from .rich_sources import CausalGaussian

RESPONSES = ("full", "no_equal_time_B", "none")


@dataclass
class OrderParameters:
    """Two-time Phi^l, G^l (l = 1..L), A^l, B^l (l = 1..L-1) and f, over all points."""
    Phi: list
    G: list
    A: list
    B: list
    f: np.ndarray

    @classmethod
    def zeros(cls, L: int, steps: int, P: int) -> "OrderParameters":
        z = lambda: np.zeros((steps + 1, P, steps + 1, P))  # noqa: E731
        return cls([z() for _ in range(L)], [z() for _ in range(L)], [z() for _ in range(L - 1)],
                   [z() for _ in range(L - 1)], np.zeros((steps + 1, P)))

    def arrays(self) -> dict:
        out = {f"Phi{l + 1}": a for l, a in enumerate(self.Phi)}
        out.update({f"G{l + 1}": a for l, a in enumerate(self.G)})
        out.update({f"A{l + 1}": a for l, a in enumerate(self.A)})
        out.update({f"B{l + 1}": a for l, a in enumerate(self.B)})
        out["f"] = self.f
        return out


def _store_row(M: np.ndarray, t: int, row: np.ndarray) -> None:
    """M(t, s) = row[:, s] for s <= t and the mirror M(s, t) = M(t, s)^T."""
    M[t, :, :t + 1] = row
    M[:t + 1, :, t] = row.transpose(1, 2, 0)


def _diverged(t: int, eta: float) -> FloatingPointError:
    return FloatingPointError(
        f"the deep infinite-width dynamics diverged at step {t} (t = {t * eta:g}): order "
        f"parameters became non-finite; reduce eta (now {eta:g}) below about 2 / lambda_max(K)")


def run_frontier(net, Kx_all, y, grid, draws, responses: str = "full",
                 frozen: OrderParameters | None = None, progress: bool | None = None):
    """Integrate all sites step by step; returns (estimated OrderParameters, per-layer paths)."""
    L, P, steps, P_train = net.hidden_layers, Kx_all.shape[0], grid.steps, y.shape[0]
    gamma0, eta, weights, n = net.gamma0, grid.eta, draws.weights, draws.n
    est = OrderParameters.zeros(L, steps, P)
    use = est if frozen is None else frozen
    functions = net.numpy_derivatives(2)
    paths = [LayerPaths(n, steps, P, functions) for _ in range(L)]
    mem = MemoryKernels(L, steps, P, gamma0, eta)
    u1, w0, zeta_u, zeta_r = draws.u1, draws.w0, draws.zeta_u, draws.zeta_r
    chol_u = {l: CausalGaussian(n, steps, P) for l in range(2, L + 1)}
    chol_r = {l: CausalGaussian(n, steps, P) for l in range(1, L)}
    sqrt_w = np.sqrt(weights)
    delta = np.zeros((steps + 1, P))
    f_shift = 0.0
    for t in tqdm(range(steps + 1), desc="deep saddle", unit="step", disable=not show_progress(progress)):
        past = delta[:t]
        for l in range(1, L + 1):                                      # forward
            if l == 1:
                u, Phi_prev, A_prev = u1, np.broadcast_to(Kx_all[:, None, :], (P, t, P)), None
            else:
                chol_u[l].extend(t, paths[l - 2].phi[:, t], sqrt_w)   # Phi^{l-1}'s own data
                u = chol_u[l].sample(t, zeta_u[l][:, :t + 1])
                Phi_prev, A_prev = use.Phi[l - 2][t, :, :t], use.A[l - 2][t, :, :t]
            mem.set_A_row(l, t, Phi_prev, A_prev, past)
            site = paths[l - 1]
            site.advance_h(t, u, mem.CA[l - 1])
            _store_row(est.Phi[l - 1], t, weighted_gram(weights, site.phi[:, t], site.phi[:, :t + 1]))
            if l < L and responses != "none" and t > 0:
                resp = site_response(site, mem.CA[l - 1], mem.CB[l - 1], t, "phi", weights)
                est.A[l - 1][t, :, :t] = resp[:, :t] / gamma0
        for l in range(L, 0, -1):                                      # backward
            if l == L:
                r, G_next, B_here = np.repeat(w0[:, None], P, axis=1), np.ones((P, t, P)), None
            else:
                chol_r[l].extend(t, paths[l].g[:, t], sqrt_w)         # G^{l+1}'s own data
                r = chol_r[l].sample(t, zeta_r[l][:, :t + 1])
                G_next, B_here = use.G[l][t, :, :t], use.B[l - 1][t, :, :t + 1]
            mem.set_B_row(l, t, G_next, B_here, past)
            site = paths[l - 1]
            site.advance_z(t, r, mem.CB[l - 1])
            _store_row(est.G[l - 1], t, weighted_gram(weights, site.g[:, t], site.g[:, :t + 1]))
            if l == L:
                out = weights @ (site.z[:, t] * site.phi[:, t]) / gamma0
                if net.center and t == 0:
                    f_shift = out.copy()  # the frozen initial network's output
                est.f[t] = out - f_shift
            if l >= 2 and responses != "none":
                resp = site_response(site, mem.CA[l - 1], mem.CB[l - 1], t, "g", weights) / gamma0
                if responses == "no_equal_time_B":
                    resp[:, t] = 0.0
                est.B[l - 2][t, :, :t + 1] = resp
        if not all(np.all(np.isfinite(a[t])) for a in est.arrays().values()):
            raise _diverged(t, eta)
        delta[t, :P_train] = y - use.f[t, :P_train]
    return est, paths
