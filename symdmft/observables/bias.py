"""The O(1/N) mean correction of predictions and kernels (THEORY.md §3, "Mean (bias)").

Prediction-only form of a two-layer network. With ``f = (1/N) sum_i psi(z_i; Delta)``,
``Delta = y - f`` on training points and ``x = f - f_inf``, expanding to second order,

    (I + D E) x = xi0 - xi1 E x + 1/2 D2[E x, E x]

(xi0, xi1: the O(N^-1/2) sampling fluctuations of psi and of its Delta-Jacobian), so

    N (E f - f_inf) = R [ - E_i( J_i g_i ) + 1/2 D2 : Sigma_Delta ] =: R u
    g_i = E R (psi_i - f)            (each site's own Delta direction)
    Sigma_Delta = E Sigma_f E^T      (N Cov of Delta)

``E_i(J_i g_i)`` is THEORY's ``Cov(d psi/dq, psi)`` term: ONE pathwise tangent sweep in
which every site follows its own direction g_i (``site_jvp``). ``D2 : Sigma_Delta`` is
``sum_k lambda_k D2[v_k, v_k]`` over the eigenpairs of Sigma_Delta: one second-order
tangent sweep per direction (``second_order``). A kernel, not fed back, moves by

    N (E K - K_inf) = Gm u - E_i(J^K_i g_i) + 1/2 D2^K : Sigma_Delta

with ``Gm = -D^K E R`` the kernel gain of the propagator.
"""
from __future__ import annotations

import numpy as np

from ..model.site import with_ntk
from .fluctuations import site_chunks


def mean_correction(module, H, W, ACT, weights, f, delta_path, kx, eta, gamma0, center, R,
                    gains, f_cov, kernel_names, n_chunk):
    """(N (E f - f_inf) as (t, point), {kernel: N (E K - K_inf) as (t, P, P)})."""
    n_t, n_site, n_point = H.shape
    P = kx.shape[1]
    nf = n_t * n_point
    kx_train = kx[:P]
    ER = R[:, :P].reshape(n_t * P, nf)
    G = np.empty((n_site, n_t, P))
    for sl, psi_f, _ in site_chunks(module, H, W, gamma0, center, kx_train, kernel_names):
        G[sl] = ((psi_f - f[None]).reshape(-1, nf) @ ER.T).reshape(-1, n_t, P)
    jvp_f, jvp_k = module.site_jvp(H, W, ACT, G, weights, delta_path, kx, eta, gamma0, n_chunk)

    sigma_delta = f_cov[:, :P, :, :P].reshape(n_t * P, n_t * P)
    lam, vec = np.linalg.eigh((sigma_delta + sigma_delta.T) / 2)
    keep = lam > 1e-12 * max(lam.max(), 1e-300)
    directions = np.ascontiguousarray(vec[:, keep].T.reshape(-1, n_t, P))
    d2F, d2K = module.second_order(H, W, ACT, directions, weights, delta_path, kx, eta, gamma0)
    lam = lam[keep]

    u = (-jvp_f + 0.5 * np.einsum("j,jta->ta", lam, d2F)).reshape(nf)
    f_bias = (R.reshape(nf, nf) @ u).reshape(n_t, n_point)
    direct = with_ntk({name: -jvp_k[:, n] + 0.5 * np.einsum("j,jtab->tab", lam, d2K[:, :, n])
                       for n, (name, _) in enumerate(kernel_names)}, kx_train)
    kernel_bias = {name: gain.reshape(-1, nf) @ u + direct[name].reshape(-1)
                   for name, gain in gains.items()}
    return f_bias, {name: b.reshape(n_t, P, P) for name, b in kernel_bias.items()}
