"""Reverse-mode derivatives of one deep layer's site averages (THEORY.md §3, deep nets).

The matrix-free propagator of nonlinear nets needs ``D'^T u``: the cotangent that a weighting
``u`` of a layer's outputs puts on the layer's inputs. This module computes it exactly for the
sampled site process, per site with the dense site Jacobian; it is the reference that faster
(time-sliced, low-rank) versions are checked against, and it already scales as O(sites n^3),
not as the dense Hessian's O(n^4) entries.

The site (``deep.site_jets``): x = (h, z) solves x - gamma0 K(x) = s, s = (u, r) its sources,
K(x) = (C g, E phi(h)), g = phi'(h) z; at a causal point J = I - gamma0 K'(x) is unit lower
triangular in time and M = J^{-1} = dx/ds. The outputs, site averages with weights w_s:

    Phi = <phi phi^T>,  G = <g g^T>,  f = <z phi> / gamma0 (the last layer),
    A = <d phi / d r> (gamma0 A^l), B = <d g / d u> (gamma0 B^{l-1}, equal-time part included).

For cotangents (Phi_, G_, f_, A_, B_) each site contributes the scalar
O = O1(x) + tr(Q^T M), with O1 the kernel and prediction terms and Q (x by s) the response
weights: Q_hr = diag(phi') A_, Q_hu = diag(phi'' z) B_, Q_zu = diag(phi') B_. With
dM = -M dJ M, tr(Q^T dM) = -<Gamma, dJ>, Gamma = M^T Q M^T, and J depends on x (through
phi', phi'' z) and on C, E explicitly. Collecting:

    x_ = dO1/dx + (dQ/dx) : M + gamma0 [the colsums of C o Gamma_hh, C o Gamma_hz, E o Gamma_zh
                                        weighted by phi''' z, phi'', phi'' (h) and phi'' (z)]
    lambda = M^T x_                           (the cotangent of the site's sources)
    C_ = gamma0 <lambda_u g^T> + gamma0 <Gamma_hh diag(phi'' z) + Gamma_hz diag(phi')>
    E_ = gamma0 <lambda_r phi^T> + gamma0 <Gamma_zh diag(phi')>

(a memory entry C_ij shifts the source u_i by gamma0 g_j, and also enters J). Only the causal
entries of C_, E_ are derivatives of the outputs; the others are returned as computed, and
are what the anti-causal (conjugate) directions of the action see (``deep.site_action``).
tests/test_site_adjoint.py checks everything against central differences of the layer map of
the saddle solver (``rich_site`` paths, ``rich_responses`` sweeps) and against the memory
columns of ``site_action.layer_hessian``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .site_jets import forward, site_jacobian


@dataclass(eq=False)
class LayerOutputs:
    """One layer's site averages (n = (steps+1) P_all, index t P_all + mu)."""
    Phi: np.ndarray     # (n, n)
    G: np.ndarray       # (n, n)
    f: np.ndarray       # (n,)  <z phi> / gamma0, centred when asked
    A: np.ndarray       # (n, n) <d phi_i / d r_j>
    B: np.ndarray       # (n, n) <d g_i / d u_j>


@dataclass(eq=False)
class LayerCotangent:
    """The derivatives of sum_s w_s O_s: memories (n, n) each, and per site its sources (S, 2n)."""
    C: np.ndarray
    E: np.ndarray
    sources: np.ndarray


def center_f(f: np.ndarray, Pa: int) -> np.ndarray:
    """f(t) - f(0) on the last axis, flat index t Pa + mu (leading axes: a batch)."""
    x = f.reshape(f.shape[:-1] + (-1, Pa))
    return (x - x[..., :1, :]).reshape(f.shape)


def center_f_cotangent(f_bar: np.ndarray, Pa: int) -> np.ndarray:
    """The transpose of ``center_f``: the t = 0 entries pay for every later step."""
    x = f_bar.reshape(f_bar.shape[:-1] + (-1, Pa)).copy()
    x[..., 0, :] -= x.sum(axis=-2)
    return x.reshape(f_bar.shape)


class SiteState:
    """Fields, derivatives of phi and the site Jacobian's inverse for a chunk of sites.
    ``phis`` = (phi, phi', ...): to the 3rd derivative for the adjoint and the noise form,
    the 4th for Price (``deep.site_price``)."""

    def __init__(self, u, r, C, E, g0, Pa, phis):
        self.h, self.z = forward(u, r, C, E, g0, Pa, phis)
        self.p = [f(self.h) for f in phis[:5]]
        self.M = np.linalg.inv(site_jacobian(self.p, self.z, C, E, g0))   # (S, 2n x, 2n s)
        self.n, self.g0, self.C, self.E = u.shape[1], g0, C, E

    def leading(self, m: int) -> "SiteState":
        """The same sites restricted to the first m indices (the steps up to some k): by
        causality their fields, and the leading blocks of J and M = J^{-1}, do not depend on
        the later ones."""
        n, out = self.n, object.__new__(SiteState)
        out.h, out.z, out.p = self.h[:, :m], self.z[:, :m], [q[:, :m] for q in self.p]
        out.M = np.empty((self.M.shape[0], 2 * m, 2 * m))
        for a, b in ((0, 0), (n, m)):                          # the (h, z) blocks, four slices
            for c, d in ((0, 0), (n, m)):
                out.M[:, b:b + m, d:d + m] = self.M[:, a:a + m, c:c + m]
        out.n, out.g0, out.C, out.E = m, self.g0, self.C[:m, :m], self.E[:m, :m]
        return out

    @property
    def g(self):
        return self.p[1] * self.z

    def field_jacobian(self):
        """K = d(g, phi(h)) / d(u, r) per site, (S, 2n, 2n): the fields F the memories act through."""
        n, M, p, z = self.n, self.M, self.p, self.z
        dg = (p[2] * z)[:, :, None] * M[:, :n] + p[1][:, :, None] * M[:, n:]
        return np.concatenate([dg, p[1][:, :, None] * M[:, :n]], axis=1)

    def responses(self):
        """Per site d phi / d r and d g / d u, (S, n, n) each."""
        n = self.n
        K = self.field_jacobian()
        return K[:, n:, n:], K[:, :n, :n]


def _unpack(bars, n, Pa, center):
    zero = np.zeros((n, n))
    Phi_, G_, A_, B_ = (bars.get(k, zero) for k in ("Phi", "G", "A", "B"))
    f_ = bars.get("f", np.zeros(n))
    return Phi_, G_, A_, B_, center_f_cotangent(f_, Pa) if center else f_


def site_values(st: SiteState, bars: dict, Pa: int, center=False) -> np.ndarray:
    """O per site (S,): the outputs' integrands paired with ``bars``."""
    Phi_, G_, A_, B_, f_ = _unpack(bars, st.n, Pa, center)
    phi, g = st.p[0], st.g
    dphi_dr, dg_du = st.responses()
    return (np.einsum("sa,ab,sb->s", phi, Phi_, phi) + np.einsum("sa,ab,sb->s", g, G_, g)
            + (st.z * phi) @ f_ / st.g0 + np.einsum("ij,sij->s", A_, dphi_dr) + np.einsum("ij,sij->s", B_, dg_du))


def site_adjoint(st: SiteState, bars: dict, Pa: int, center=False, factors=False):
    """(lambda, Gamma) per site: lambda = dO/d(u, r) (S, 2n) and Gamma = M^T Q M^T (S, 2n, 2n),
    whose blocks carry the memories' explicit part (module docstring). ``factors``: also
    (rows, W) with Gamma = M^T[:, rows] W, rows the non-zero rows of Q and W = Q[rows] M^T."""
    n, g0, C, E = st.n, st.g0, st.C, st.E
    p, z, M = st.p, st.z, st.M
    phi, g = p[0], st.g
    Phi_, G_, A_, B_, f_ = _unpack(bars, n, Pa, center)
    # dO1/dx: kernels and the prediction
    phi_ = phi @ (Phi_ + Phi_.T) + f_ * z / g0
    g_ = g @ (G_ + G_.T)
    xh = p[1] * phi_ + p[2] * z * g_
    xz = p[1] * g_ + f_ * phi / g0
    # (dQ/dx) : M, the response weights' own dependence on the path
    Mhu, Mhr, Mzu = M[:, :n, :n], M[:, :n, n:], M[:, n:, :n]
    rA = np.einsum("ij,sij->si", A_, Mhr)
    rBh = np.einsum("ij,sij->si", B_, Mhu)
    rBz = np.einsum("ij,sij->si", B_, Mzu)
    xh += p[2] * rA + p[3] * z * rBh + p[2] * rBz
    xz += p[2] * rBh
    # -<Gamma, dJ>: Gamma = M^T Q M^T, through Q's non-zero rows only (a time slice's, when
    # the bars are one frontier group's): O(rows n^2) per site instead of O(n^3)
    hrows = np.flatnonzero(np.any(B_ != 0, axis=1) | np.any(A_ != 0, axis=1))
    zrows = np.flatnonzero(np.any(B_ != 0, axis=1))
    rows = np.concatenate([hrows, n + zrows])
    Q = np.zeros((z.shape[0], rows.size, 2 * n))               # Q's non-zero rows only
    Q[:, :hrows.size, :n] = (p[2] * z)[:, hrows, None] * B_[hrows]
    Q[:, :hrows.size, n:] = p[1][:, hrows, None] * A_[hrows]
    Q[:, hrows.size:, :n] = p[1][:, zrows, None] * B_[zrows]
    MT = M.transpose(0, 2, 1)
    W = Q @ MT
    Gam = MT[:, :, rows] @ W
    Ghh, Ghz, Gzh = Gam[:, :n, :n], Gam[:, :n, n:], Gam[:, n:, :n]
    cA = np.einsum("ab,sab->sb", C, Ghh)
    xh += g0 * (p[3] * z * cA + p[2] * np.einsum("ab,sab->sb", C, Ghz) + p[2] * np.einsum("ab,sab->sb", E, Gzh))
    xz += g0 * p[2] * cA
    lam = np.einsum("sxa,sx->sa", M, np.concatenate([xh, xz], axis=1))
    return (lam, Gam, rows, W) if factors else (lam, Gam)


def layer_outputs(u, r, C, E, g0, Pa, phis, wt, center=False) -> LayerOutputs:
    """The site averages of one layer for sources u, r (S, n) with weights wt (S,)."""
    st = SiteState(u, r, C, E, g0, Pa, phis)
    phi, g = st.p[0], st.g
    dphi_dr, dg_du = st.responses()
    f = wt @ (st.z * phi) / g0
    return LayerOutputs(Phi=(phi * wt[:, None]).T @ phi, G=(g * wt[:, None]).T @ g,
                        f=center_f(f, Pa) if center else f,
                        A=np.tensordot(wt, dphi_dr, axes=1), B=np.tensordot(wt, dg_du, axes=1))


def layer_vjp(u, r, C, E, g0, Pa, phis, wt, bars: dict, center=False, state=None) -> LayerCotangent:
    """The cotangent of (C, E, sources) for output cotangents ``bars`` (module docstring).

    ``bars`` may hold 'Phi', 'G', 'A', 'B' (n, n) and 'f' (n,); missing ones are zero. ``C``,
    ``E`` are the memories without gamma0 (h = u + gamma0 C g), causal. ``state``: a
    ``SiteState`` of these sites to reuse.
    """
    return state_vjp(state or SiteState(u, r, C, E, g0, Pa, phis), bars, wt, Pa, center)


def state_vjp(st: SiteState, bars: dict, wt, Pa: int, center=False, adjoint=None) -> LayerCotangent:
    """``layer_vjp`` on the sites of ``st`` (which may be ``SiteState.leading``); ``adjoint``:
    ``site_adjoint`` of these bars, when the caller has it."""
    n, g0, p, phi, g = st.n, st.g0, st.p, st.p[0], st.g
    lam, Gam = (adjoint or site_adjoint(st, bars, Pa, center))[:2]
    Ghh, Ghz, Gzh = Gam[:, :n, :n], Gam[:, :n, n:], Gam[:, n:, :n]
    wl = lam * wt[:, None]
    C_ = g0 * (wl[:, :n].T @ g + np.einsum("s,sab,sb->ab", wt, Ghh, p[2] * st.z)
               + np.einsum("s,sab,sb->ab", wt, Ghz, p[1]))
    E_ = g0 * (wl[:, n:].T @ phi + np.einsum("s,sab,sb->ab", wt, Gzh, p[1]))
    return LayerCotangent(C=C_, E=E_, sources=wl)
