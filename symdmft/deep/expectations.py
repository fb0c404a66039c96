"""Gaussian site averages of one activation: two-point kernel maps and four-point moments.

``GaussianRules(phi)`` answers the two questions the layered statistics ask of a layer
whose pre-activations are ``h ~ N(0, C)`` over the data points (THEORY.md §3, "Lazy limit"):

* ``pair_maps(C)``: the NNGP map ``Phi = E[phi phi^T]``, the gradient map
  ``Dphi = E[phi' phi'^T]`` and their Price-theorem sensitivities as (P^2, P^2) matrices,
  ``J[M]_{mu nu} = 1/2 sum_ab <d_a d_b (phi_mu phi_nu)> M_ab`` (and likewise ``Jd`` for
  phi' phi'). Only a, b in {mu, nu} contribute, so each row has at most three entries.
  Closed forms (``closed_forms.py``) are used where known and differentiated by SymPy;
  otherwise the second derivatives of ``phi(h_1) phi(h_2)`` are taken by ``sympy.diff`` and
  averaged by 2D Gauss-Hermite (1D on the diagonal). For a kinked activation without a
  closed form the regularised derivatives would drop Dirac masses, so the derivative-free
  identity ``dE/dC = 1/2 E[F (C^-1 h h^T C^-1 - C^-1)]`` is used instead (slower convergence).
* ``four_point(C)``: ``E[phi_a phi_b phi_c phi_d]``, ``E[phi'_a phi'_b phi'_c phi'_d]`` and
  ``E[phi_a phi_b phi'_c phi'_d]`` for all index tuples, as (P, P, P, P) arrays. Each tuple
  with distinct points S is computed once, on |S| <= 4 dimensions: exactly for relu
  (orthant moments, ``orthant.py``) and polynomials (Gauss-Hermite with enough nodes),
  by the tensor rule of ``quadrature.py`` otherwise.
"""
from __future__ import annotations

import warnings
from itertools import combinations, product

import numpy as np
import sympy as sp

from ..arch.activations import KINKS, h, regularise
from .closed_forms import PAIR_ARGS, c, closed_pair_forms, gradient, is_relu
from .orthant import orthant_moment
from .quadrature import gaussian_fields, pair_nodes, tensor_moments

h1, h2 = sp.symbols("h1 h2", real=True)


def _lambdify(args, expr):
    fn = sp.lambdify(args, regularise(expr), modules=["scipy", "numpy"])
    return lambda *x: np.broadcast_to(np.asarray(fn(*x), dtype=float), np.broadcast(*x).shape)


def _surjective(k):
    return [t for t in product(range(k), repeat=4) if set(t) == set(range(k))]


class GaussianRules:
    """Gaussian expectations of ``phi`` (a SymPy expression in h) and of its derivatives."""

    def __init__(self, phi: sp.Expr):
        self.phi = phi
        self.dphi = sp.diff(phi, h)
        self.smooth = not phi.has(*KINKS)
        self.relu = is_relu(phi)
        self.poly_degree = sp.Poly(phi, h).degree() if phi.is_polynomial(h) else None
        self.closed = closed_pair_forms(phi)
        self._f = _lambdify([h], phi)
        self._df = _lambdify([h], self.dphi)
        if self.closed is not None:
            self._pair = [self._closed_pair(form) for form in self.closed]
        else:
            if not self.smooth:
                warnings.warn(f"activation {phi} is kinked and has no closed form: Price "
                              "sensitivities use the derivative-free identity, which converges "
                              "slowly under Gauss-Hermite quadrature", stacklevel=3)
            self._pair = [self._quadrature_pair(fn) for fn in (phi, self.dphi)]

    # ---- two-point maps -------------------------------------------------------------
    @staticmethod
    def _closed_pair(form):
        grad_off, grad_diag = gradient(form)
        off = _lambdify(PAIR_ARGS, form.off)
        d_off = [_lambdify(PAIR_ARGS, g) for g in grad_off]
        diag, d_diag = _lambdify([c], form.diag), _lambdify([c], grad_diag)

        def evaluate(c1, c2, c3, cd):
            return off(c1, c2, c3), [g(c1, c2, c3) for g in d_off], diag(cd), d_diag(cd)
        return evaluate

    def _quadrature_pair(self, fn):
        F2, Fd = fn.subs(h, h1) * fn.subs(h, h2), fn**2
        f2, fd = _lambdify([h1, h2], F2), _lambdify([h], Fd)
        hess = [_lambdify([h1, h2], sp.diff(F2, a, b)) for a, b in ((h1, h1), (h1, h2), (h2, h2))]
        dfd = _lambdify([h], sp.diff(Fd, h, 2))
        smooth = self.smooth

        def evaluate(c1, c2, c3, cd):
            C = np.stack([np.stack([c1, c2], -1), np.stack([c2, c3], -1)], -2)
            H, w = gaussian_fields(C, pair_nodes(np.sqrt(np.max(cd, initial=0.0)), 2))
            a, b = H[:, 0], H[:, 1]
            off = f2(a, b) @ w
            if smooth:  # Price: dE/dc11 = E[d1^2 F]/2, dE/dc12 = E[d1 d2 F]
                d_off = [hess[0](a, b) @ w / 2, hess[1](a, b) @ w, hess[2](a, b) @ w / 2]
            else:       # score identity: dE/dC = E[F (C^-1 h h^T C^-1 - C^-1)] / 2
                Ci = np.linalg.inv(C)
                y = np.matmul(Ci, H)
                S = y[:, :, None, :] * y[:, None, :, :] - Ci[..., None]
                F = f2(a, b)
                d_off = [(F * S[:, 0, 0]) @ w / 2, (F * S[:, 0, 1]) @ w, (F * S[:, 1, 1]) @ w / 2]
            Hd, wd = gaussian_fields(cd[:, None, None], pair_nodes(np.sqrt(np.max(cd)), 1))
            x = Hd[:, 0]
            diag = fd(x) @ wd
            if smooth:
                d_diag = dfd(x) @ wd / 2
            else:
                d_diag = (fd(x) * (x**2 / cd[:, None] ** 2 - 1 / cd[:, None])) @ wd / 2
            return off, d_off, diag, d_diag
        return evaluate

    def pair_maps(self, C: np.ndarray):
        """``(Phi, J, Dphi, Jd)`` for pre-activation covariance C (P, P); J, Jd are (P^2, P^2)."""
        return (*self._pair_map(self._pair[0], C), *self._pair_map(self._pair[1], C))

    @staticmethod
    def _pair_map(evaluate, C):
        P = C.shape[0]
        iu, ju = np.triu_indices(P, 1)
        dg = np.diagonal(C).copy()
        off, d_off, diag, d_diag = evaluate(dg[iu], C[iu, ju], dg[ju], dg)
        M = np.zeros((P, P))
        M[iu, ju] = M[ju, iu] = off
        M[np.arange(P), np.arange(P)] = diag
        J = np.zeros((P, P, P, P))
        for mu, nu in ((iu, ju), (ju, iu)):       # rows (i, j) and (j, i), i < j
            J[mu, nu, iu, iu] = d_off[0]
            J[mu, nu, ju, ju] = d_off[2]
            J[mu, nu, iu, ju] = J[mu, nu, ju, iu] = d_off[1] / 2
        r = np.arange(P)
        J[r, r, r, r] = d_diag
        return M, J.reshape(P * P, P * P)

    # ---- four-point moments ---------------------------------------------------------
    def four_point(self, C: np.ndarray):
        """(E[phi^4-type], E[phi'^4-type], E[phi phi phi' phi']) over all index tuples, (P,)*4 each."""
        P = C.shape[0]
        out = {kind: np.zeros((P,) * 4) for kind in ("pp", "dd", "pd")}
        for k in range(1, min(4, P) + 1):
            sets = np.array(list(combinations(range(P), k)))
            C_sets = C[sets[:, :, None], sets[:, None, :]]
            tuples = _surjective(k)
            values = self._set_moments(k, C_sets, tuples)
            for t in tuples:
                g = tuple(sets[:, i] for i in t)
                for kind in out:
                    out[kind][g] = values[kind][_key(kind, t)]
        return out["pp"], out["dd"], out["pd"]

    def _set_moments(self, k, C_sets, tuples):
        keys = {kind: sorted({_key(kind, t) for t in tuples}) for kind in ("pp", "dd", "pd")}
        if self.relu:
            return {kind: {key: orthant_moment(_relu_powers(kind, key, k), C_sets) for key in ks}
                    for kind, ks in keys.items()}
        n = None
        if self.poly_degree is not None:  # degree 4d per axis: exact with 2d + 1 nodes
            n = 2 * max(self.poly_degree, 1) + 1
        factor_keys = {(kind, key): _factors(kind, key, k) for kind, ks in keys.items() for key in ks}
        moments = tensor_moments(C_sets, sorted(set(factor_keys.values())), self._f, self._df, n)
        return {kind: {key: moments[factor_keys[(kind, key)]] for key in ks} for kind, ks in keys.items()}


def _key(kind, t):
    return tuple(sorted(t)) if kind != "pd" else (tuple(sorted(t[:2])), tuple(sorted(t[2:])))


def _relu_powers(kind, key, k):
    phis = key if kind == "pp" else (() if kind == "dd" else key[0])
    return tuple(phis.count(i) for i in range(k))


def _factors(kind, key, k):
    """Per-coordinate factor strings of a moment: ("pd", "p", "d") = phi_0 phi'_0 phi_1 phi'_2."""
    if kind == "pd":
        pairs = [(i, "p") for i in key[0]] + [(i, "d") for i in key[1]]
    else:
        pairs = [(i, kind[0]) for i in key]
    return tuple("".join(sorted(f for i, f in pairs if i == j)) for j in range(k))
