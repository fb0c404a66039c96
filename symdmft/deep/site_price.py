"""The cotangent of a layer's source covariances by Price's theorem (THEORY.md §3, deep nets).

A layer's sources are u ~ N(0, X), r ~ N(0, Y) with X = Phi^{l-1}, Y = G^{l+1} order
parameters, so ``D'^T`` also needs d<O>/dX for the output pairing O of ``deep.site_adjoint``.
Price's theorem gives it without the inverse of X (nearly singular: consecutive steps barely
differ) and without differentiating a root of it:

    d<O> / dX_kl = 1/2 < d_{u_k} d_{u_l} O >        (X_kl and X_lk separate coordinates)

The source Hessian of O per site takes O(n^3) (the third source jets of ``deep.site_jets``,
which the dense layer Hessian uses, take O(n^5)): with x = (h, z) and O = O(x(s)),

    d2 O / ds ds = M^T [ d2 O / dx dx + gamma0 lambda . K'' ] M,      lambda = M^T dO/dx,

since x_ab = gamma0 M K''[x_a, x_b] (``deep.site_jets``); lambda . K'' is diagonal in the
index j. O holds the responses tr(Q(x)^T M(x)), whose x-Hessian needs
d2M = M J_i M J_k M + (i <-> k) - M J_ik M. Each J_i = dJ/dx_i has at most two non-zero
columns (j and n + j, for x_i = h_j or z_j), so every term is an elementwise product of two
n x n matrices made by a few products with M. tests/test_site_adjoint.py checks the result
against the dense Hessian's w-X and theta-X blocks on the same sites, to rounding.
"""
from __future__ import annotations

import numpy as np

from .site_adjoint import SiteState, center_f_cotangent, site_adjoint
from .site_price_kernel import add_response_hessian


def _T(X):
    return X.transpose(0, 2, 1)


def _right(A, B):
    """A @ B for a stack A (S, a, b) and one matrix B (b, c): one GEMM, not S small ones."""
    return (A.reshape(-1, A.shape[-1]) @ B).reshape(A.shape[:-1] + (B.shape[1],))


def response_parts(st: SiteState, A_, B_, MC, ME, NC, NE):
    """The n-column factors of the responses' x-Hessian, (S, 2n, n) each: MUh, MU2 (M applied
    to J's column derivatives), NUh, NU2 (N = M Q^T M applied to them), Mqa, Mqb (M applied to
    the response weights' row derivatives)."""
    n, p, z, M = st.n, st.p, st.z, st.M
    p3z = p[3] * z
    # dJ/dh_j = -gamma0 (Uh_j e_hj^T + U2_j e_zj^T), dJ/dz_j = -gamma0 U2_j e_hj^T, with
    # Uh_j = phi''' z c_j + phi'' e_j, U2_j = phi'' c_j, c_j = (C[:, j], 0), e_j = (0, E[:, j])
    MUh, MU2 = MC * p3z[:, None, :] + ME * p[2][:, None, :], MC * p[2][:, None, :]
    NUh, NU2 = NC * p3z[:, None, :] + NE * p[2][:, None, :], NC * p[2][:, None, :]
    # Q's rows depend on their own index: d/dh_j gives qa_j = (phi''' z B_j, phi'' A_j) on row h_j
    # and qb_j = (phi'' B_j, 0) on row z_j; d/dz_j gives qb_j on row h_j. Mqa, Mqb = M qa, M qb.
    MB, MA = _columns(M[:, :, :n], B_), _columns(M[:, :, n:], A_)
    return MUh, MU2, NUh, NU2, MB * p3z[:, None, :] + MA * p[2][:, None, :], MB * p[2][:, None, :]


def response_hessian_numpy(parts, g0):
    """gamma0^2 (Y + Y^T) + gamma0 (X + X^T), (S, 2n, 2n), x = (h, z): Y[i, k] =
    tr(Q^T M J_i M J_k M) and X[i, k] = -tr(Q_i^T M J_k M), each without the powers of -gamma0
    that J_i carries. The readable reference of ``site_price_kernel.add_response_hessian``."""
    MUh, MU2, NUh, NU2, Mqa, Mqb = parts
    S, m, n = MUh.shape
    h, zz = slice(0, n), slice(n, m)
    tr = lambda A: np.ascontiguousarray(_T(A))                   # noqa: E731  (S, n, 2n)
    NUhT, NU2T, MqaT, MqbT = tr(NUh), tr(NU2), tr(Mqa), tr(Mqb)
    Y = np.empty((S, m, m))
    Y[:, h, h] = (MUh[:, h] * NUhT[:, :, h] + MU2[:, h] * NUhT[:, :, zz]
                  + MUh[:, zz] * NU2T[:, :, h] + MU2[:, zz] * NU2T[:, :, zz])
    Y[:, h, zz] = MU2[:, h] * NUhT[:, :, h] + MU2[:, zz] * NU2T[:, :, h]
    Y[:, zz, h] = MUh[:, h] * NU2T[:, :, h] + MU2[:, h] * NU2T[:, :, zz]
    Y[:, zz, zz] = MU2[:, h] * NU2T[:, :, h]
    X = np.empty((S, m, m))
    X[:, h, h] = (MqaT[:, :, h] * MUh[:, h] + MqbT[:, :, h] * MUh[:, zz]
                  + MqaT[:, :, zz] * MU2[:, h] + MqbT[:, :, zz] * MU2[:, zz])
    X[:, h, zz] = MqaT[:, :, h] * MU2[:, h] + MqbT[:, :, h] * MU2[:, zz]
    X[:, zz, h] = MqbT[:, :, h] * MUh[:, h] + MqbT[:, :, zz] * MU2[:, h]
    X[:, zz, zz] = MqbT[:, :, h] * MU2[:, h]
    return g0**2 * (Y + _T(Y)) + g0 * (X + _T(X))


def _columns(M, B):
    """M B^T per site, (S, 2n, n), through B's non-zero rows (one time slice's, for a group)."""
    out = np.zeros(M.shape[:2] + (B.shape[0],))
    rows = np.flatnonzero(np.any(B != 0, axis=1))
    out[:, :, rows] = _right(M, B[rows].T)
    return out


def memory_products(st: SiteState):
    """(M C, M E) per site, (S, 2n, n) each: column j is M applied to J's column direction
    (C[:, j], 0), resp. (0, E[:, j]); they depend on the sites only, not on the bars."""
    n, M = st.n, st.M
    return _right(M[:, :, :n], st.C), _right(M[:, :, n:], st.E)


def source_hessian_x(st: SiteState, bars: dict, Pa: int, center=False, adjoint=None, products=None):
    """(d2 O / dx dx + gamma0 lambda . K'') per site, (S, 2n, 2n): the middle of the source
    Hessian M^T (.) M (module docstring). ``adjoint``: ``site_adjoint(..., factors=True)`` of
    these bars, ``products``: ``memory_products(st)``, when the caller has them."""
    n, g0, C, E = st.n, st.g0, st.C, st.E
    p, z, M = st.p, st.z, st.M
    zero = np.zeros((n, n))
    Phi_, G_, A_, B_ = (bars.get(k, zero) for k in ("Phi", "G", "A", "B"))
    f_ = bars.get("f", np.zeros(n))
    if center:
        f_ = center_f_cotangent(f_, Pa)
    lam, _, rows, W = adjoint or site_adjoint(st, bars, Pa, center, factors=True)
    MC, ME = products or memory_products(st)
    # N = M Q^T M = Gamma^T = W^T M[rows], so N C = W^T (M C)[rows]: O(rows n^2)
    NC, NE = _T(W) @ MC[:, rows], _T(W) @ ME[:, rows]
    H = add_response_hessian(*response_parts(st, A_, B_, MC, ME, NC, NE), g0, np.zeros((z.shape[0], 2 * n, 2 * n)))
    # the kernels' own second derivatives: dense blocks
    h, zz = slice(0, n), slice(n, 2 * n)
    Ps, Gs = Phi_ + Phi_.T, G_ + G_.T
    dg_dh = p[2] * z                                           # g = phi'(h) z
    H[:, h, h] += p[1][:, :, None] * Ps * p[1][:, None, :] + dg_dh[:, :, None] * Gs * dg_dh[:, None, :]
    H[:, h, zz] += dg_dh[:, :, None] * Gs * p[1][:, None, :]
    H[:, zz, h] += p[1][:, :, None] * Gs * dg_dh[:, None, :]
    H[:, zz, zz] += p[1][:, :, None] * Gs * p[1][:, None, :]
    # same-index terms (h_j h_j and h_j z_j): the fields' curvature, the response weights'
    # second derivatives tr(Q_ii' M), J's own -tr(Q^T M J_ii' M), and gamma0 lambda . K''
    Gg, Pp = st.g @ Gs, p[0] @ Ps
    rA = np.einsum("ij,sij->si", A_, M[:, :n, n:])
    rBh = np.einsum("ij,sij->si", B_, M[:, :n, :n])
    rBz = np.einsum("ij,sij->si", B_, M[:, n:, :n])
    diag = lambda X: np.einsum("sjj->sj", X)                     # noqa: E731
    Cl, El = lam[:, :n] @ C, lam[:, n:] @ E
    dhh = (p[2] * Pp + Gg * p[3] * z + f_ * z * p[2] / g0
           + p[4] * z * rBh + p[3] * (rA + rBz)
           + g0 * (p[4] * z * diag(NC[:, h]) + p[3] * diag(NE[:, h]) + p[3] * diag(NC[:, zz]))
           + g0 * (Cl * p[3] * z + El * p[2]))
    dhz = Gg * p[2] + f_ * p[1] / g0 + p[3] * rBh + g0 * p[3] * diag(NC[:, h]) + g0 * Cl * p[2]
    idx = np.arange(n)
    H[:, idx, idx] += dhh
    H[:, idx, n + idx] += dhz
    H[:, n + idx, idx] += dhz
    return H


def price_cotangents(st: SiteState, bars: dict, wt, Pa: int, center=False, kinds=("u", "r"),
                     adjoint=None) -> dict:
    """{'u': X_, 'r': Y_} (n, n): 1/2 sum_s wt_s d_k d_l O_s over each kind's sources;
    ``bars`` as in ``site_adjoint.layer_vjp``; ``st`` built with phi to its 4th derivative;
    ``adjoint`` as in ``source_hessian_x``."""
    n, M = st.n, st.M
    H = source_hessian_x(st, bars, Pa, center, adjoint=adjoint)
    out = {}
    for kind in kinds:
        Mk = M[:, :, :n] if kind == "u" else M[:, :, n:]
        out[kind] = 0.5 * np.tensordot(wt, _T(Mk) @ (H @ Mk), axes=1)
    return out
