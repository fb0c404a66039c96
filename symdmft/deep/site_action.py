"""Second variation of one deep layer's log generating function (THEORY.md §3, deep nets).

For layer l the site is driven by sources u ~ N(0, X), r ~ N(0, Y) (X = Phi^{l-1},
Y = G^{l+1}) and memories C, E (``deep.site_jets``). Its log generating function, with
conjugates w of the site observables psi = (phi_a phi_b, g_a g_b, z_a phi_a / gamma0),

    ln Z(w; X, Y, C, E) = ln E_{u,r}[ exp(-w . psi) / |det J| ],   J = d(u, r) / d(h, z),

is the MSR integral of the site: the Jacobian is 1 at a causal point but not away from it,
and the anti-causal entries of C and E are the conjugates of the response functions B and A
(for a linear site ``-ln|det J| = -ln det(I - gamma0^2 C E)``, ``deep.linear_action``). With
X_J = -ln|det J| per site, a memory entry theta = C_ij (E_ij) acting on the field F = g_j
(phi(h_j)) through the source a = u_i (r_i), one finds at the causal point

    dX_J / dtheta          = gamma0 d_a F_theta                (a response: its mean is gamma0^2 B(j, i))
    d2X_J / dtheta dtheta' = gamma0^2 [d_a' F_theta d_a F_theta' + F_theta' d_a d_a' F_theta
                                       + F_theta d_a d_a' F_theta']

and d psi / d theta = gamma0 F_theta d_a psi (a memory entry shifts a source). The Hessian of
ln Z at w = 0 is then a set of site averages:

    w w:        Cov(psi, psi)
    w X_kl:     -1/2 E[d_{u_k} d_{u_l} psi]                       (Price; Y likewise with r)
    w theta:    -E[d psi / d theta] - Cov(psi, dX_J / dtheta)
    theta theta': E[d2X_J] + Cov(dX_J / dtheta, dX_J / dtheta')
    X_kl theta: 1/2 E[d_{u_k} d_{u_l} dX_J / dtheta]             (Price; Y likewise)
    X X, X Y, Y Y: 0  (ln Z = 0 for every source covariance at a causal point)

X_ij and X_ji are separate coordinates; the density depends on (X + X^T) / 2. Layout of the
returned matrix (every matrix row-major): w = (Phi n^2, G n^2, F n), then X, Y, C, E (n^2
each). tests/oracles/deep_site_action.py computes the same matrix by finite differences of
ln Z (sites solved by Newton away from causality, |det J| evaluated).
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from ..runtime.samplers import covariance_root
from .site_jets import site_jets


def truncated_root(M: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """(n, r) factor U with U U^T = M (symmetric part, PSD), zero directions dropped."""
    U = covariance_root(M)
    keep = np.sum(U * U, axis=0) > rtol * max(1.0, float(np.max(np.abs(M))))
    return U[:, keep]


def cholesky_root(M: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """(n, r) lower-triangular factor U with U U^T = M (symmetric part, PSD): Cholesky in index
    order, a column whose pivot is below rtol max|M| dropped (its variance is already explained
    by the earlier ones to that accuracy). Unlike an eigenvector root it is a smooth function
    of M, column by column, wherever the kept pivots stay positive: what differences of site
    averages in M need (``deep.nonlinear_bias``)."""
    M = (M + M.T) / 2
    n = M.shape[0]
    tol = rtol * max(1.0, float(np.max(np.abs(M))))
    U = np.zeros((n, n))
    for j in range(n):
        col = M[j:, j] - U[j:, :j] @ U[j, :j]
        if col[0] > tol:
            U[j:, j] = col / np.sqrt(col[0])
    return U[:, np.any(U != 0.0, axis=0)]


def layer_source_rule(X, Y, make_rule, root=truncated_root, sort=True):
    """(U, rule): the sources of a layer's site averages are (u, r) = U zeta, zeta the rule's
    standard normals of dimension rank(X) + rank(Y), U (2n, dim) block-diagonal with factors
    ``root(X)``, ``root(Y)``. ``sort``: the largest-variance directions on the first
    (best-distributed) Sobol coordinates; False keeps the root's order."""
    n = X.shape[0]
    Ux, Uy = root(X), root(Y)
    U = np.zeros((2 * n, Ux.shape[1] + Uy.shape[1]))
    U[:n, :Ux.shape[1]], U[n:, Ux.shape[1]:] = Ux, Uy
    if sort:
        U = U[:, np.argsort(-np.sum(U * U, axis=0), kind="stable")]
    return U, make_rule(U.shape[1])


def _center_f(x, Pa, center):
    """The output is f(t) - f(0) when centred: psi_f(t, mu) - psi_f(0, mu) along axis 1."""
    if not center:
        return x
    return x - np.tile(x[:, :Pa], (1, x.shape[1] // Pa) + (1,) * (x.ndim - 2))


def _psi_jets(J, g0, Pa, center):
    """psi (S, m) and its source derivatives (S, m, 2n): psi = (phi_a phi_b, g_a g_b, z_a phi_a / gamma0)."""
    S, n = J.h.shape

    def outer(A, B):
        v = A[0][:, :, None] * B[0][:, None, :]
        d1 = A[1][:, :, None] * B[0][:, None, :, None] + A[0][:, :, None, None] * B[1][:, None]
        return v.reshape(S, n * n), d1.reshape(S, n * n, -1)

    parts = [outer(J.phi, J.phi), outer(J.g, J.g),
             (J.zj[0] * J.phi[0] / g0, (J.zj[1] * J.phi[0][:, :, None] + J.zj[0][:, :, None] * J.phi[1]) / g0)]
    return tuple(np.concatenate([parts[0][k], parts[1][k], _center_f(parts[2][k], Pa, center)], axis=1)
                 for k in range(2))


def _price_sum(J, wt, g0, Pa, center, K):
    """sum_s wt_s d_k d_l psi_s (m, |K|^2), k, l over the sources K: Price's theorem's w-X
    (w-Y) block. For psi = A_a B_b the sum is <A2_a B_b> + <A_a B2_b> + <A1_a B1_b> + its
    transpose in (k, l): two BLAS products, never a (sites, m, n, n) array."""
    S, n = J.h.shape
    k = K.stop - K.start

    def outer(A):                                              # psi_ab = A_a A_b
        A0, A1, A2 = A[0], A[1][..., K], A[2][..., K, K]
        T = (A2.reshape(S, n * k * k).T @ (A0 * wt[:, None])).reshape(n, k, k, n)   # (a, k, l, b)
        U = ((A1 * wt[:, None, None]).reshape(S, n * k).T @ A1.reshape(S, n * k)).reshape(n, k, n, k)
        d2 = T.transpose(0, 3, 1, 2) + T.transpose(3, 0, 1, 2) + U.transpose(0, 2, 1, 3) + U.transpose(0, 2, 3, 1)
        return d2.reshape(n * n, k * k)

    Z, P = J.zj, J.phi
    Z1, P1, Z2, P2 = Z[1][..., K], P[1][..., K], Z[2][..., K, K], P[2][..., K, K]
    f = np.einsum("s,sakl->akl", wt, Z2 * P[0][:, :, None, None] + Z[0][:, :, None, None] * P2
                  + Z1[:, :, :, None] * P1[:, :, None, :] + Z1[:, :, None, :] * P1[:, :, :, None]) / g0
    return np.concatenate([outer(P), outer(J.g), _center_f(f[None], Pa, center)[0].reshape(n, k * k)])


def _memory_index(n):
    """For theta = C_ij (i n + j) then E_ij: the field (g_j or phi(h_j)) and the source (u_i or r_i)."""
    i, j = np.divmod(np.arange(n * n), n)
    field = np.concatenate([j, n + j])                        # into F = (g, phi(h))
    source = np.concatenate([i, n + i])                       # into s = (u, r)
    return field, source


# Sites per chunk: the third jets hold a few (sites, 2n, n, n, 2n) arrays, so the chunk shrinks
# with n to keep each at most CHUNK_BYTES (64 sites up to n = 19; n = 24: 25 sites).
CHUNK_BYTES = 2**28


def default_chunk(n: int) -> int:
    """Sites per chunk for n = (steps+1) P_all (``CHUNK_BYTES``)."""
    return int(max(1, min(64, CHUNK_BYTES // (8 * 4 * n**4))))


def layer_hessian(phis, g0, X, Y, C, E, Pa, make_rule, center=False, chunk=None,
                  price=("u", "r"), root=truncated_root, jacobian=True, sort=True) -> np.ndarray:
    """The Hessian of ln Z over (w, X, Y, C, E) at w = 0 and causal (C, E) (module docstring).

    ``make_rule(dim)`` returns a ``Rule`` of standard-normal points of dimension
    dim = rank(X) + rank(Y), with weights; ``phis`` = (phi, phi', ..., 4th derivative).
    ``price`` names the source covariances (u: X, r: Y) whose blocks (w-X and X-theta, by
    second and third derivatives: the costly part) are wanted; the others are left zero. Sources are
    ``root(X) zeta_u``, ``root(Y) zeta_r`` (any factor with U U^T = (X + X^T) / 2).
    ``jacobian=False`` drops X_J (the ablation without response fluctuations). Sites are taken
    ``chunk`` at a time (None: ``default_chunk(n)``). ``sort``: the largest-variance source
    directions on the first Sobol coordinates; False keeps the root's order (a smooth root
    stays smooth: no reordering between nearby X).
    """
    n = X.shape[0]
    chunk = chunk or default_chunk(n)
    U, rule = layer_source_rule(X, Y, make_rule, root, sort)
    m, M = 2 * n * n + n, 2 * n * n
    field, source = _memory_index(n)
    nf = 2 * n                                                # fields F = (g, phi(h)); sources (u, r)
    sums = {"psi": np.zeros(m), "psipsi": np.zeros((m, m)), "F1F1": np.zeros((nf * nf, nf * nf)),
            "F2F0": np.zeros((nf ** 3, nf)), "dX": np.zeros(M), "dXdX": np.zeros((M, M)),
            "psidX": np.zeros((m, M)), "dpsiF": np.zeros((m * nf, nf)), "wX": np.zeros((m, n * n)),
            "wY": np.zeros((m, n * n)), "XM": np.zeros((n * n, M)), "YM": np.zeros((n * n, M))}
    # one BLAS thread: these are many small products, and OpenBLAS's idle threads spinning
    # after a large one made them 4x slower on 2 busy cores (measured 46 s vs 11 s)
    with threadpool_limits(1, user_api="blas"):
        for start in range(0, rule.n, chunk):
            zeta, wt = rule.zeta[start:start + chunk], rule.weights[start:start + chunk]
            s = zeta @ U.T
            jets = site_jets(s[:, :n], s[:, n:], C, E, g0, Pa, phis, third=price)
            _accumulate(sums, jets, wt, g0, Pa, center, field, source, price)
    _gather(sums, g0, field, source)
    if not jacobian:
        for key in ("dX", "dXdX", "psidX", "d2X", "XM", "YM"):
            sums[key][...] = 0.0
    mean, mdX = sums["psi"], sums["dX"]
    H = np.zeros((m + 2 * n * n + M, m + 2 * n * n + M))
    w_, x_, y_, mem = slice(0, m), slice(m, m + n * n), slice(m + n * n, m + 2 * n * n), slice(m + 2 * n * n, None)
    H[w_, w_] = sums["psipsi"] - np.outer(mean, mean)
    H[w_, x_], H[w_, y_] = -0.5 * sums["wX"], -0.5 * sums["wY"]
    H[w_, mem] = -g0 * sums["Fdpsi"] - (sums["psidX"] - np.outer(mean, mdX))
    H[mem, mem] = sums["d2X"] + sums["dXdX"] - np.outer(mdX, mdX)
    H[x_, mem], H[y_, mem] = 0.5 * g0 * sums["XM"], 0.5 * g0 * sums["YM"]
    lower = np.tril(np.ones_like(H, dtype=bool), -1)
    H[lower] = H.T[lower]                                     # the blocks above fill the upper triangle
    return H


def _gather(sums, g0, field, source):
    """The memory blocks from the site sums over all (field, source) pairs (``_accumulate``):
    d2X[theta, theta'] = gamma0^2 <F1[f, a'] F1[f', a] + F2[f, a, a'] F[f'] + (theta <-> theta')>
    and Fdpsi[w, theta] = <d_a psi_w F_f>, for theta = (field f, source a), theta' = (f', a')."""
    nf = sums["F2F0"].shape[1]
    F1F1 = sums["F1F1"].reshape(nf, nf, nf, nf)               # (f, a', f', a)
    F2F0 = sums["F2F0"].reshape(nf, nf, nf, nf)               # (f, a, a', f')
    f, a = field[:, None], source[:, None]
    f2, a2 = field[None, :], source[None, :]
    M2F = F2F0[f, a, a2, f2]
    sums["d2X"] = g0**2 * (F1F1[f, a2, f2, a] + M2F + M2F.T)
    sums["Fdpsi"] = sums["dpsiF"].reshape(-1, nf, nf)[:, source, field]


def _accumulate(sums, jets, wt, g0, Pa, center, field, source, price):
    """Add one chunk's weighted site sums (module docstring) to ``sums``: the memory blocks as
    products over all (field, source) pairs, one BLAS product each (``_gather`` picks the
    pairs the memory entries use: 4x the flops of the pairs alone, ~10x faster than gathering
    (sites, 2n^2, 2n^2) arrays first)."""
    n = jets.h.shape[1]
    m = 2 * n * n + n
    S, nf = wt.size, 2 * n
    psi, dpsi = _psi_jets(jets, g0, Pa, center)
    F = [np.concatenate([a, b], axis=1) for a, b in zip(jets.g, jets.phi)]   # F = (g, phi(h)) and jets
    dX = g0 * F[1][:, field, source]                                       # dX_J / dtheta
    wF0 = F[0] * wt[:, None]
    Q = F[1].reshape(S, nf * nf)
    sums["F1F1"] += (Q * wt[:, None]).T @ Q
    sums["F2F0"] += F[2].reshape(S, nf ** 3).T @ wF0
    sums["dpsiF"] += dpsi.reshape(S, m * nf).T @ wF0
    sums["psi"] += wt @ psi
    sums["psipsi"] += (psi * wt[:, None]).T @ psi
    sums["dX"] += wt @ dX
    sums["dXdX"] += (dX * wt[:, None]).T @ dX
    sums["psidX"] += (psi * wt[:, None]).T @ dX
    for kind, key in (("u", "wX"), ("r", "wY")):
        if kind in price:                      # d_k d_l psi over that kind of source
            sums[key] += _price_sum(jets, wt, g0, Pa, center, slice(0, n) if kind == "u" else slice(n, 2 * n))
    for kind, key in (("u", "XM"), ("r", "YM")):
        if kind in price:                      # d_k d_l d_a(theta) F_theta over (k l, theta)
            phi3, g3 = (np.tensordot(wt, d3, axes=1).transpose(1, 2, 3, 0).reshape(n * n, n * n)
                        for d3 in jets.third[kind])    # (j, k, l, i) -> (k l, i j)
            sums[key] += np.concatenate([g3, phi3], axis=1)   # C_ij acts through g_j, E_ij through phi(h_j)
