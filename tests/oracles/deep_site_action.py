"""Finite-difference Hessian of one deep-net layer's log generating function (numpy only, no symdmft).

THEORY.md §3 (deep nets: responses as conjugates; the site Jacobian).

The object
----------
Index i = t*P + mu (t = 0..T, mu = 0..P-1, t-major), n = (T+1) P. Per site, with g = phi'(h) * z,

    h = u + g0 C g(h, z),      z = r + g0 E phi(h),      u ~ N(0, Xs),  r ~ N(0, Ys),

Xs = (X + X^T)/2, Ys = (Y + Y^T)/2 (X_ij and X_ji are separate parameters). J = d(u, r)/d(h, z) is
the 2n x 2n Jacobian of (h, z) -> (h - g0 C g, z - g0 E phi(h)) (h block first). Observables
psi = (Phi_ab = phi_a phi_b, G_ab = g_a g_b  [all n^2 ordered pairs, row-major], F_a = z_a phi_a / g0)
and

    lnZ(w, theta) = ln E_{u,r}[ exp(-w . psi) / |det J| ],      theta = (X, Y, C, E).

``layer_action_hessian_fd`` returns the dense Hessian of lnZ over
z = (w [2n^2 + n], X [n^2], Y [n^2], C [n^2], E [n^2]) (each matrix flattened row-major), at w = 0
and a causal (C, E): C_ij = 0 unless t(j) < t(i), E_ij = 0 unless t(j) <= t(i).

Solver. Sources u = chol(Xs) zeta_u, r = chol(Ys) zeta_r on FIXED quadrature nodes zeta (common
random numbers: the same nodes at every perturbed theta, Cholesky factor recomputed). The site
solution is first found by forward substitution with the causal parts of (C, E); if (C, E) has
non-causal entries it is then refined per site by batched Newton on h (z eliminated; stop when the
residual max|R| <= 1e-14 (1 + max|u|)), and ln|det J| comes from np.linalg.slogdet of
(I0) the n x n Schur complement J_h = I - g0 C diag(phi'' z) - g0^2 C diag(phi') E diag(phi'),
     det J = det J_h exactly (the z-z block of J is the identity).
P (data points per time) is a keyword of ``layer_action_hessian_fd``; it fixes t(i) = i // P.
The result is the Hessian OF THE QUADRATURE: for tanh, GH 7^6 (the stored reference) differs from
GH 6^6 by up to ~0.9 in single entries, so a comparison must use the very same nodes and weights.

FD scheme and the exact identities used (step h, absolute, on every coordinate of z)
------------------------------------------------------------------------------------
Let q be the tilted measure q_s ∝ W_s exp(-w.psi_s) / |det J_s| (W = quadrature weights).
(I1) w-w block:      d2 lnZ / dw dw' = Cov_q(psi, psi')       -- computed directly, no FD.
(I2) w-theta block:  d2 lnZ / dw dtheta = -d<psi>_q / dtheta  -- central first difference
                     -(<psi>_q(theta + h e) - <psi>_q(theta - h e)) / 2h  (at w = 0).
(I1) and (I2) follow from d lnZ / dw = -<psi>_q.
theta-theta block: f(theta) = lnZ(0, theta) = ln sum_s W_s / |det J_s|, with
     off-diagonal  [f(++) - f(+-) - f(-+) + f(--)] / 4h^2,   diagonal  [f(+) - 2 f(0) + f(-)] / h^2.
(I3) If (C, E) is causal, J is unit lower triangular in the order (h(t), z(t))_{t = 0..T}, so
     det J = 1 at every site and the forward substitution is the exact solution; hence f = ln sum W
     on the whole causal set. With ``exploit_causality=True`` (default): causal evaluations skip
     Newton and slogdet, and theta-theta pairs of two causality-preserving coordinates (X, Y, the
     strictly causal C_ij, the causal E_ij) are set to exactly 0 (f is constant on their plane).
     ``exploit_causality=False`` does every evaluation and every pair by brute force.
All errors are O(h^2) truncation plus roundoff ~ 1e-16 / h^2.
"""
from __future__ import annotations

import itertools
import os

if __name__ == "__main__":      # many tiny BLAS calls: threads only contend on a shared machine
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

__all__ = ["layer_action_hessian_fd", "gauss_hermite_nodes", "random_causal_problem", "TANH"]

TANH = (np.tanh,
        lambda h: 1.0 - np.tanh(h) ** 2,
        lambda h: -2.0 * np.tanh(h) * (1.0 - np.tanh(h) ** 2),
        lambda h: (6.0 * np.tanh(h) ** 2 - 2.0) * (1.0 - np.tanh(h) ** 2))


def gauss_hermite_nodes(dim, per_axis):
    """Tensor probabilists' Gauss-Hermite rule for N(0, I_dim): nodes (per_axis**dim, dim), weights sum 1."""
    x, w = hermegauss(per_axis)
    w = w / w.sum()
    nodes = np.stack(np.meshgrid(*([x] * dim), indexing="ij"), -1).reshape(-1, dim)
    weights = np.prod(np.stack(np.meshgrid(*([w] * dim), indexing="ij"), -1).reshape(-1, dim), 1)
    return nodes, weights


def random_causal_problem(T, P, seed, scale=0.3):
    """PD X, Y = A A^T / n + 0.5 I and causal C, E with N(0, scale^2) entries (i = t*P + mu)."""
    rng = np.random.default_rng(seed)
    n = (T + 1) * P
    t = np.arange(n) // P
    out = {}
    for k in "XY":
        A = rng.standard_normal((n, n))
        out[k] = A @ A.T / n + 0.5 * np.eye(n)
    out["C"] = scale * rng.standard_normal((n, n)) * (t[:, None] > t[None, :])
    out["E"] = scale * rng.standard_normal((n, n)) * (t[:, None] >= t[None, :])
    return out


def _masks(n, P):
    t = np.arange(n) // P
    return t, t[:, None] > t[None, :], t[:, None] >= t[None, :]


def _solve_sites(phis, g0, C, E, u, r, P, brute):
    """Site solution h, z (n, S) for sources u, r (n, S) (site index last) and ln|det J| (S,).

    z is eliminated, z(h) = r + g0 E phi(h), so Newton runs on h alone with the Jacobian J_h (I0).
    """
    phi, dphi, ddphi = phis[:3]
    n, S = u.shape
    t, strict, causal = _masks(n, P)
    Cc, Ec = C * strict, E * causal
    h, z = np.zeros((n, S)), np.zeros((n, S))
    for tt in range(t[-1] + 1):                       # forward substitution with the causal part
        ix = slice(tt * P, (tt + 1) * P)
        h[ix] = u[ix] + g0 * Cc[ix] @ (dphi(h) * z)
        z[ix] = r[ix] + g0 * Ec[ix] @ phi(h)
    if not brute and np.array_equal(Cc, C) and np.array_equal(Ec, E):
        return h, z, np.zeros(S)                       # identity (I3)

    def jac(h, z):                                     # (S, n, n)
        d1 = dphi(h)
        J = np.eye(n)[:, :, None] - g0 * C[:, :, None] * (ddphi(h) * z)[None]
        J -= g0 ** 2 * np.einsum("ac,cs,cb->abs", C, d1, E) * d1[None]
        return J.transpose(2, 0, 1)

    for _ in range(60):
        z = r + g0 * E @ phi(h)
        R = h - g0 * C @ (dphi(h) * z) - u
        J = jac(h, z)
        if np.max(np.abs(R)) <= 1e-14 * (1.0 + np.max(np.abs(u))):
            return h, z, np.linalg.slogdet(J)[1]
        h = h - np.linalg.solve(J, R.T[..., None])[..., 0].T
    raise RuntimeError("site Newton did not converge")


def _psi(phis, g0, h, z):
    """psi (S, 2n^2 + n) from h, z (n, S)."""
    ph, g = phis[0](h), phis[1](h) * z
    n, S = h.shape
    return np.concatenate([(ph[:, None] * ph[None]).reshape(n * n, S),
                           (g[:, None] * g[None]).reshape(n * n, S), z * ph / g0]).T


def _evaluate(phis, g0, theta, n, zeta, weights, P, brute, w=None):
    """(lnZ(w, theta), <psi>_q, psi, q) on the quadrature; zeta = nodes.T, shape (2n, S)."""
    X, Y, C, E = theta.reshape(4, n, n)
    u = np.linalg.cholesky((X + X.T) / 2) @ zeta[:n]
    r = np.linalg.cholesky((Y + Y.T) / 2) @ zeta[n:]
    h, z, logdet = _solve_sites(phis, g0, C, E, u, r, P, brute)
    psi = _psi(phis, g0, h, z)
    a = -logdet if w is None else -logdet - psi @ w
    amax = a.max()
    q = weights * np.exp(a - amax)
    Z = q.sum()
    q = q / Z
    return np.log(Z) + amax, q @ psi, psi, q


def layer_action_hessian_fd(phi_derivs, g0, X, Y, C, E, nodes, weights, step=1e-4, *, P=1,
                            exploit_causality=True):
    """Dense Hessian of lnZ over z = (w, X, Y, C, E) at w = 0 (see the module docstring).

    phi_derivs = (phi, dphi, ddphi[, dddphi]) as numpy callables (dddphi unused); nodes (S, 2n)
    standard-normal points (first n -> u, last n -> r), weights (S,) summing to 1; P = number of data
    points (i = t*P + mu). Shape (6 n^2 + n, 6 n^2 + n).
    """
    n = np.shape(C)[0]
    _, strict, causal = _masks(n, P)
    C, E = np.asarray(C, float), np.asarray(E, float)
    if np.any(C[~strict]) or np.any(E[~causal]):
        raise ValueError("the base point (C, E) must be causal")
    brute = not exploit_causality
    theta0 = np.concatenate([np.ravel(X), np.ravel(Y), C.ravel(), E.ravel()]).astype(float)
    keep = np.concatenate([np.ones(2 * n * n, bool), strict.ravel(), causal.ravel()])  # (I3)
    m, K = 2 * n * n + n, theta0.size
    zeta = np.ascontiguousarray(np.asarray(nodes, float).T)
    f = lambda th: _evaluate(phi_derivs, g0, th, n, zeta, weights, P, brute)[:2]

    H = np.zeros((m + K, m + K))
    f0, _, psi, q = _evaluate(phi_derivs, g0, theta0, n, zeta, weights, P, brute)
    c = psi - q @ psi
    H[:m, :m] = (c * q[:, None]).T @ c                                      # (I1)
    hh = step
    for k in range(K):
        e = np.zeros(K)
        e[k] = hh
        (fp, mp), (fm, mm) = f(theta0 + e), f(theta0 - e)
        H[:m, m + k] = H[m + k, :m] = -(mp - mm) / (2 * hh)                 # (I2)
        H[m + k, m + k] = (fp - 2 * f0 + fm) / hh ** 2
    for a, b in itertools.combinations(range(K), 2):
        if exploit_causality and keep[a] and keep[b]:
            continue                                                         # (I3): exactly 0
        val = 0.0
        for sa, sb in itertools.product((1, -1), repeat=2):
            th = theta0.copy()
            th[a] += sa * hh
            th[b] += sb * hh
            val += sa * sb * f(th)[0]
        H[m + a, m + b] = H[m + b, m + a] = val / (4 * hh ** 2)
    return H


def lnZ_full(phi_derivs, g0, zvec, n, nodes, weights, P=1):
    """lnZ at the full variable vector z = (w, X, Y, C, E) (brute-force solver); for self-checks."""
    m = 2 * n * n + n
    return _evaluate(phi_derivs, g0, np.asarray(zvec[m:], float), n, np.asarray(nodes, float).T,
                     weights, P, True,
                     w=np.asarray(zvec[:m], float))[0]


REF_PATH = __file__.replace(".py", "_ref.npz")

if __name__ == "__main__":  # regenerate the CI reference: tanh, T = 2, P = 1, g0 = 0.8, seed 0, GH 7^6
    import time
    T, P, g0, seed, per_axis = 2, 1, 0.8, 0, 7
    prob = random_causal_problem(T, P, seed)
    nodes, weights = gauss_hermite_nodes(2 * (T + 1) * P, per_axis)
    t0 = time.time()
    H = layer_action_hessian_fd(TANH, g0, prob["X"], prob["Y"], prob["C"], prob["E"], nodes, weights,
                                step=1e-4, P=P)
    print(f"Hessian {H.shape} in {time.time() - t0:.1f} s; asymmetry {np.abs(H - H.T).max():.1e}")
    np.savez(REF_PATH, hessian=H, X=prob["X"], Y=prob["Y"], C=prob["C"], E=prob["E"], g0=g0, T=T, P=P,
             seed=seed, step=1e-4, activation="tanh", per_axis=per_axis, nodes_dim=2 * (T + 1) * P,
             layout="z = (w: Phi (n^2), G (n^2), F (n); X, Y, C, E (n^2 each, row-major)); "
                    "nodes = gauss_hermite_nodes(nodes_dim, per_axis)")
