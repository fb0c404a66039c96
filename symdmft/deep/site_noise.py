"""kappa' of one deep layer as a bilinear form on conjugate directions (THEORY.md §3, deep nets).

kappa' = d2 ln Z_l / dw' dw' at the saddle, where w' are the conjugates of the layer's kernels
and f (w) and the anti-causal memory entries theta (``deep.site_action``). Along a direction
U = (U_w, U_theta), with a(tau) = -tau U_w . psi + X_J(tau U_theta) per site,

    U kappa' U = Var(a') + < a'' >,
    a'  = -U_w . psi + gamma0 [tr(U^C dg/du) + tr(U^E dphi/dr)]
    a'' = 2 gamma0 (d a' / d(u, r)) . v + gamma0^2 tr((U~^T K)^2),

with U^C, U^E the directions on the memories C, E (theta = C_ij acts on the field g_j
through the source u_i), v = (U^C g, U^E phi) the source shift they make, K = d(g, phi)/d(u, r)
and U~^T K = [[U^C K_gu, U^C K_gr], [U^E K_phiu, U^E K_phir]]. Derivation: X_J's second
derivative (``site_action``) contracted twice with U is gamma0^2 [tr((U~^T K)^2) +
2 D_v tr(U . dF/ds)], and -2 U_w . dpsi/dtau = -2 gamma0 D_v (U_w . psi); together
2 gamma0 D_v a' plus the trace. a' is the pairing O of ``deep.site_adjoint`` with
bars (-U_Phi, -U_G, -U_f, A_ = gamma0 U^E^T, B_ = gamma0 U^C^T), so its source gradient is
``site_adjoint``'s lambda. Nothing here needs Price or a source root: O(n^3) per site and
direction. tests/test_site_adjoint.py checks it against the dense layer Hessian.
"""
from __future__ import annotations

import numpy as np

from .site_adjoint import SiteState, site_adjoint, site_values


def noise_bars(U: dict, g0: float) -> dict:
    """The output pairing whose per-site value is a' (module docstring)."""
    return {"Phi": -U["Phi"], "G": -U["G"], "f": -U["f"], "B": g0 * U["C"].T, "A": g0 * U["E"].T}


def layer_noise(st: SiteState, directions: list, wt: np.ndarray, Pa: int, center=False,
                diagonal=False) -> np.ndarray:
    """(k, k): U_a kappa' U_b for k directions, each a dict of 'Phi', 'G', 'C', 'E' (n, n) and
    'f' (n,) (zeros where the layer has none); ``diagonal``: only U_a kappa' U_a, (k,)."""
    g0, n = st.g0, st.n
    K = st.field_jacobian()                                   # (S, 2n fields (g, phi), 2n sources)
    a1, grad, shift, Z = [], [], [], []
    for U in directions:
        bars = noise_bars(U, g0)
        a1.append(site_values(st, bars, Pa, center))
        grad.append(site_adjoint(st, bars, Pa, center)[0])
        shift.append(np.concatenate([st.g @ U["C"].T, st.p[0] @ U["E"].T], axis=1))
        Z.append(np.concatenate([U["C"] @ K[:, :n], U["E"] @ K[:, n:]], axis=1))
    a1 = np.array(a1)                                         # (k, S)
    mean = a1 @ wt

    def second(i, j):
        return wt @ (g0 * (np.einsum("sa,sa->s", grad[i], shift[j]) + np.einsum("sa,sa->s", grad[j], shift[i]))
                     + g0**2 * np.einsum("sab,sba->s", Z[i], Z[j]))
    k = len(directions)
    if diagonal:
        return (a1 * a1) @ wt - mean**2 + np.array([second(i, i) for i in range(k)])
    out = (a1 * wt) @ a1.T - np.outer(mean, mean)
    for i in range(k):
        for j in range(i, k):
            out[i, j] += second(i, j)
            out[j, i] = out[i, j]
    return out
