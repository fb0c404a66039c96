"""Pathwise derivatives of one deep layer's site to third order in its sources (THEORY.md §2, §3).

A layer's site (index i = t P_all + mu over steps and points, n of them) is driven by Gaussian
sources s = (u, r) and memory matrices C, E:

    h = u + gamma0 C g(h, z),   z = r + gamma0 E phi(h),   g = phi'(h) z.

Write x = (h, z) and K(x) = (C g, E phi(h)), so that x - gamma0 K(x) = s. At a causal point
(C strictly earlier in time, E earlier or equal) the Jacobian ``J = I - gamma0 K'(x)`` is unit
lower triangular once x is ordered (h(t), z(t)) by time, and by implicit differentiation

    x_a   = R e_a,                          R = J^{-1} (the site's response to its sources)
    x_ab  = gamma0 R K''[x_a, x_b]
    x_abc = gamma0 R (K''[x_ab, x_c] + K''[x_ac, x_b] + K''[x_bc, x_a] + K'''[x_a, x_b, x_c]).

``site_jets`` returns, per site, the fields and the source derivatives of the scalar fields
``phi(h_j)`` and ``g_j`` (to third order) and ``z_j`` (to second): everything the second
variation of the deep action needs (``deep.site_action``). A perturbation of a memory entry
C_ij is a shift of the source u_i by gamma0 g_j (E_ij: r_i by gamma0 phi(h_j)), so memory
sensitivities are source derivatives too. Vectorised over sites; callers chunk the sites
(memory grows like (2n)^4 per site).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .site_jets_third import third_fields, third_outputs


@dataclass(eq=False)
class Jets:
    """Fields and source derivatives of a chunk of S sites; source axes have length 2n (u then r)."""
    h: np.ndarray          # (S, n)
    z: np.ndarray
    phi: tuple             # phi(h_j), d_a, d_ab: (S, n), (S, n, 2n), (S, n, 2n, 2n)
    g: tuple               # g_j = phi'(h_j) z_j, same shapes
    zj: tuple              # z_j, same shapes
    third: dict            # {"u" or "r": (phi3, g3)}, k, l over that kind of source:
                           #  phi3[s, j, k, l, i] = d_k d_l d_{r_i} phi(h_j), g3[...] = d_k d_l d_{u_i} g_j,
                           #  (S, n, n, n, n): the pairs the memory entries E_ij, C_ij need


def forward(u, r, C, E, g0, Pa, phis):
    """The causal site solution (h, z) for sources u, r (S, n); time blocks of Pa points."""
    S, n = u.shape
    h, z, g, ph = (np.zeros((S, n)) for _ in range(4))
    for t in range(n // Pa):
        i = slice(t * Pa, (t + 1) * Pa)
        h[:, i] = u[:, i] + g0 * g[:, :t * Pa] @ C[i, :t * Pa].T
        ph[:, i] = phis[0](h[:, i])
        z[:, i] = r[:, i] + g0 * ph[:, :(t + 1) * Pa] @ E[i, :(t + 1) * Pa].T
        g[:, i] = phis[1](h[:, i]) * z[:, i]
    return h, z


def site_jacobian(p, z, C, E, g0):
    """J = I - gamma0 K'(x) per site, (S, 2n, 2n): rows the equations (u, r), columns (h, z);
    ``p`` = (phi, phi', phi'', ...) at h."""
    S, n = z.shape
    J = np.broadcast_to(np.eye(2 * n), (S, 2 * n, 2 * n)).copy()
    J[:, :n, :n] -= g0 * C[None] * (p[2] * z)[:, None, :]
    J[:, :n, n:] -= g0 * C[None] * p[1][:, None, :]
    J[:, n:, :n] -= g0 * E[None] * p[1][:, None, :]
    return J


def _bilinear(p, z, vh, vz, wh, wz, C, E):
    """K''[v, w] for field vectors v, w with site axis first and the field index second.

    Top: C (phi''' z v_h w_h + phi'' (v_h w_z + v_z w_h)); bottom: E (phi'' v_h w_h).
    ``p`` = (phi, phi', phi'', phi''', ...) at h, broadcast against the trailing axes.
    """
    top, bot = _bilinear_fields(p, z, vh, vz, wh, wz)
    return np.concatenate([_left(C, top), _left(E, bot)], axis=1)


def _bilinear_fields(p, z, vh, vz, wh, wz):
    """The fields that C and E multiply in K''[v, w] (``_bilinear`` before the memories act)."""
    return p[3] * z * vh * wh + p[2] * (vh * wz + vz * wh), p[2] * vh * wh


def _left(M, A):
    """sum_j M_ij A_{s j ...}: one BLAS product (NumPy's stacked matmul is ~70x slower here)."""
    return np.moveaxis(np.tensordot(M, A, axes=([1], [1])), 0, 1)


def site_jets(u, r, C, E, g0, Pa, phis, third=()) -> Jets:
    """Fields and their source jets at causal (C, E); ``phis`` = (phi, phi', ..., 4th derivative).

    ``third`` names the kinds of source pairs ("u", "r") whose third derivatives are needed
    (Price's theorem for a source covariance that is itself an order parameter).
    """
    S, n = u.shape
    h, z = forward(u, r, C, E, g0, Pa, phis)
    p = [f(h) for f in phis]
    R = np.linalg.inv(site_jacobian(p, z, C, E, g0))         # (S, 2n field, 2n source)
    x1 = R
    h1, z1 = x1[:, :n], x1[:, n:]
    e = lambda a, k: a.reshape(a.shape + (1,) * k)              # noqa: E731  (S, n) -> (S, n, 1, ..)
    pz = [e(q, 2) for q in p]
    K2 = _bilinear(pz, e(z, 2), h1[:, :, :, None], z1[:, :, :, None], h1[:, :, None, :], z1[:, :, None, :], C, E)
    x2 = g0 * _left_batched(R, K2)
    h2, z2 = x2[:, :n], x2[:, n:]
    phi = _chain(p[0:3], h1, h2)
    dphi = _chain(p[1:4], h1, h2)                             # jets of phi'(h)
    g = _product(dphi, (z, z1, z2))
    out = {}
    if third:
        pk = np.ascontiguousarray(np.stack(p))
        # x3 = gamma0 R (C top; E bot) = gamma0 (R_h C, R_z E)(top; bot): the memories folded into R
        RCE = g0 * np.concatenate([(R[:, :, :n].reshape(-1, n) @ C).reshape(S, 2 * n, n),
                                   (R[:, :, n:].reshape(-1, n) @ E).reshape(S, 2 * n, n)], axis=2)
    for kind in third:
        k0 = 0 if kind == "u" else n
        x3 = _left_batched(RCE, third_fields(pk, z, R, x2, k0))
        out[kind] = third_outputs(pk, z, R, x2, x3, k0)
    return Jets(h=h, z=z, phi=phi, g=g, zj=(z, z1, z2), third=out)


def _left_batched(R, A):
    """sum_k R_{s f k} A_{s k ...}: one BLAS product per site (a loop: NumPy's stacked matmul
    is ~70x slower for these shapes, measured)."""
    flat = A.reshape(A.shape[0], A.shape[1], -1)
    out = np.empty((A.shape[0], R.shape[1], flat.shape[2]))
    for s in range(A.shape[0]):
        np.matmul(R[s], flat[s], out=out[s])
    return out.reshape(A.shape[0], R.shape[1], *A.shape[2:])


def _chain(q, h1, h2):
    """Jets (second order) of F(h_j) from those of h_j: q = (F, F', F'') at h."""
    d1 = q[1][:, :, None] * h1
    d2 = q[2][:, :, None, None] * h1[:, :, :, None] * h1[:, :, None, :] + q[1][:, :, None, None] * h2
    return q[0], d1, d2


def _product(A, B):
    """Jets (second order) of the elementwise product of two jets."""
    a0, a1, a2 = A
    b0, b1, b2 = B
    p1 = a1 * b0[:, :, None] + a0[:, :, None] * b1
    p2 = (a2 * b0[:, :, None, None] + a1[:, :, :, None] * b1[:, :, None, :]
          + a1[:, :, None, :] * b1[:, :, :, None] + a0[:, :, None, None] * b2)
    return a0 * b0, p1, p2

