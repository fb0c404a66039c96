"""Site covariances kappa of one layer: the noise each layer injects (THEORY.md §3).

At finite width a layer's kernels are averages over its N i.i.d. neurons, so given the
layer below (``h^l ~ N(0, Phi^{l-1})``) and the backward field above
(``z^l ~ N(0, G^{l+1})``, independent of h^l at t = 0),

    Phi^l = <phi phi^T> + eps_Phi^l / sqrt(N),    G^l = <phi' phi'^T> * G^{l+1} + eps_G^l / sqrt(N)

with eps the central-limit noise of the neuron average, covariance the site covariance
(THEORY.md §3, ``kappa_ab = Cov_site(psi_a, psi_b)``) of ``psi_Phi = phi phi^T`` and
``psi_G = (phi' phi'^T) * (z z^T)``:

    kPP[(mu nu), (a b)] = E[phi_mu phi_nu phi_a phi_b] - Phi_mu nu Phi_ab
    kGG[(mu nu), (a b)] = E[phi'_mu phi'_nu phi'_a phi'_b] (G_mu nu G_ab + G_mu a G_nu b + G_mu b G_nu a)
                          - G^l_mu nu G^l_ab                         (Isserlis for z, G = G^{l+1})
    kPG[(mu nu), (a b)] = G_ab (E[phi_mu phi_nu phi'_a phi'_b] - Phi_mu nu Dphi_ab)

Noise of different layers is uncorrelated (each is a martingale increment given the layers
below it and the backward fields above it), so kappa is block-diagonal across layers (O9).
At the top layer z^L = w is one scalar per neuron: G^{L+1} = 1 and E[w^4] = 3 follow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerNoise:
    """kappa blocks of one layer as (P^2, P^2) matrices over ordered pairs (mu, nu)."""
    PP: np.ndarray
    GG: np.ndarray
    PG: np.ndarray

    def joint(self) -> np.ndarray:
        """[[kPP, kPG], [kPG^T, kGG]] (2 P^2, 2 P^2)."""
        return np.block([[self.PP, self.PG], [self.PG.T, self.GG]])


def layer_noise(moments, Phi, Dphi, G_above) -> LayerNoise:
    """kappa of one layer from its four-point moments (``GaussianRules.four_point``).

    Phi, Dphi: this layer's <phi phi^T>, <phi' phi'^T>; G_above: G^{l+1} (ones at the top).
    """
    m_pp, m_dd, m_pd = moments
    P = Phi.shape[0]
    G = G_above
    z4 = (np.einsum("mn,ab->mnab", G, G) + np.einsum("ma,nb->mnab", G, G)
          + np.einsum("mb,na->mnab", G, G))
    G_l = Dphi * G
    PP = m_pp - np.einsum("mn,ab->mnab", Phi, Phi)
    GG = m_dd * z4 - np.einsum("mn,ab->mnab", G_l, G_l)
    PG = (m_pd - np.einsum("mn,ab->mnab", Phi, Dphi)) * G[None, None]
    n = P * P
    return LayerNoise(PP.reshape(n, n), GG.reshape(n, n), PG.reshape(n, n))
