"""``sd.initial_statistics``: mean kernels of a deep MLP at t = 0 and their N Cov.

Means (THEORY.md §1 conventions; the NNGP and NTK recursions):

    Phi^0 = Kx,  Phi^l = <phi phi^T>_{Phi^{l-1}},  Dphi^l = <phi' phi'^T>_{Phi^{l-1}},
    G^{L+1} = 1, G^l = Dphi^l * G^{l+1},  K = sum_{l=0..L} G^{l+1} * Phi^l   (elementwise).

Fluctuations at O(1/sqrt(N)) (THEORY.md §3, "Lazy limit": variance accumulation). Each
layer injects noise ``eps^l = (eps_Phi^l, eps_G^l)`` with site covariance kappa^l
(``noise.py``), uncorrelated across layers, and the linearised recursions carry it

    forward:  dPhi^l = J^l dPhi^{l-1} + eps_Phi^l                          (dPhi^0 = 0)
    backward: dG^l   = Dphi^l * dG^{l+1} + G^{l+1} * Jd^l dPhi^{l-1} + eps_G^l   (dG^{L+1} = 0)
    NTK:      dK     = sum_l G^{l+1} * dPhi^l + Phi^l * dG^{l+1}

with the Price sensitivities J, Jd of ``expectations.py``. Every kernel X is therefore a
linear image of the layer noises, ``dX = sum_m S_X^m eps^m``; this module computes the
response matrices S_X^m (each (P^2, 2 P^2): the layer-m columns of (I - D)^{-1}) and

    N Cov(X, Y) = sum_m S_X^m kappa^m (S_Y^m)^T,

so the cross-covariances between layers that the propagation creates are all included and
no object larger than (P^2)^2 per layer pair is formed.
"""
from __future__ import annotations

import numpy as np

from ..arch.mlp import MLP
from ..problem import Data
from .expectations import GaussianRules
from .noise import layer_noise
from .result import InitStats


def _input_gram(data: Data, points: str) -> np.ndarray:
    if points == "all":
        return data.Kx_all
    if points == "train":
        return data.X @ data.X.T / data.D
    raise ValueError(f"points must be 'all' or 'train', got {points!r}")


def initial_statistics(net: MLP, data: Data, points: str = "all", fluctuations: bool = True) -> InitStats:
    """Mean kernels and N Cov of Phi^l, G^l (l = 1..L) and K at initialisation, any L, any gamma0.

    ``points``: 'all' (train then test points, as every result axis of the package) or
    'train'. ``fluctuations=False`` computes the means only (no four-point moments).
    At t = 0 nothing depends on gamma0 except the output: ``f0_var`` is
    ``N Var f(0) = Phi^L / gamma0^2`` for an uncentred net (THEORY.md O7), 0 if centred.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a symdmft MLP, got {type(net).__name__}")
    if not isinstance(data, Data):
        raise TypeError(f"data must be a symdmft Data, got {type(data).__name__}")
    Kx = _input_gram(data, points)
    L, P = net.hidden_layers, Kx.shape[0]
    n = P * P
    rules = GaussianRules(net.activation)

    # ---- means, forward then backward ------------------------------------------------
    Phi, J, Dphi, Jd = [Kx], [None], [None], [None]
    for _ in range(L):
        M, Jl, D, Jdl = rules.pair_maps(Phi[-1])
        Phi.append(M), J.append(Jl), Dphi.append(D), Jd.append(Jdl)
    G = [None] * (L + 2)
    G[L + 1] = np.ones((P, P))
    for l in range(L, 0, -1):
        G[l] = Dphi[l] * G[l + 1]
    K = sum(G[l + 1] * Phi[l] for l in range(L + 1))
    means = {"K": K}
    means.update({f"Phi{l}": Phi[l] for l in range(1, L + 1)})
    means.update({f"G{l}": G[l] for l in range(1, L + 1)})
    f0_var = np.zeros((P, P)) if net.center else Phi[L] / net.gamma0**2
    params = {**net.describe(), **data.describe(), "points": points}
    if not fluctuations:
        return InitStats(means=means, response=None, kappa=None, f0_var=f0_var, params=params)

    # ---- layer noise --------------------------------------------------------------------
    kappa = [None] + [layer_noise(rules.four_point(Phi[l - 1]), Phi[l], Dphi[l], G[l + 1])
                      for l in range(1, L + 1)]

    # ---- responses to the noise of layer m: S[X][m] = (dX/d eps_Phi^m, dX/d eps_G^m) --------
    zero = np.zeros((n, n))
    eye = np.eye(n)
    S_phi = {0: {m: (zero, zero) for m in range(1, L + 1)}}
    for l in range(1, L + 1):
        S_phi[l] = {m: (J[l] @ S_phi[l - 1][m][0] + (eye if m == l else 0), zero)
                    for m in range(1, L + 1)}
    S_g = {L + 1: {m: (zero, zero) for m in range(1, L + 1)}}
    for l in range(L, 0, -1):
        keep = Dphi[l].reshape(n, 1)
        lift = G[l + 1].reshape(n, 1) * Jd[l]
        S_g[l] = {m: (keep * S_g[l + 1][m][0] + lift @ S_phi[l - 1][m][0],
                      keep * S_g[l + 1][m][1] + (eye if m == l else 0))
                  for m in range(1, L + 1)}
    S_k = {m: (sum(G[l + 1].reshape(n, 1) * S_phi[l][m][0] + Phi[l].reshape(n, 1) * S_g[l + 1][m][0]
                   for l in range(L + 1)),
               sum(Phi[l].reshape(n, 1) * S_g[l + 1][m][1] for l in range(L + 1)))
           for m in range(1, L + 1)}

    response = {"K": S_k}
    response.update({f"Phi{l}": S_phi[l] for l in range(1, L + 1)})
    response.update({f"G{l}": S_g[l] for l in range(1, L + 1)})
    return InitStats(means=means, response=response, kappa=kappa[1:], f0_var=f0_var, params=params)
