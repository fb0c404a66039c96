"""The O(1/N) mean correction of deep nets as a shift of q': the pieces shared by every
activation (THEORY.md §3, "Mean (bias) correction"; ``deep.linear_bias`` derives the formula).

With the propagator Sigma and the response R = (I - D')^{-1} at the saddle, in THEORY.md
§3's coordinates (``linear_action.theory_form``),

    N (E q' - q'_inf) = R div,   div = sum_k d/dq'_k of column k of 1/2 D'(q') Sigma + kappa'(q') R^T,

with Sigma and R held fixed. ``divergence`` takes the derivatives by central differences at
q'* +- eps e_k of any column (``deep.linear_bias``: products with the matrix-free operator);
``dense_divergence`` of columns from theory-form blocks rebuilt there (any activation: the
blocks come from a callback); ``shift_observables`` turns the shift into f's, the kernels'
and the NTK's corrections.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .linear_tangents import _Layout
from .propagator import observable_rows


def flatten(res, lay: _Layout) -> np.ndarray:
    """The order parameters of ``res`` as one vector in ``lay``'s order."""
    v = np.zeros(lay.size)
    u, n = lay.unpack(v), lay.n
    for kind in ("Phi", "G", "A", "B"):
        for l, M in enumerate(getattr(res, kind), start=1):
            u[f"{kind}{l}"][...] = M.reshape(n, n)
    u["f"][...] = res.f.reshape(-1)
    return v


def at_point(res, lay: _Layout, v: np.ndarray):
    """A copy of ``res`` holding the order parameters ``v`` (``flatten``'s layout)."""
    u, (T1, Pa) = lay.unpack(v), res.f.shape
    shape = (T1, Pa, T1, Pa)
    two_time = {kind: [u[f"{kind}{l}"].reshape(shape).copy() for l in range(1, len(getattr(res, kind)) + 1)]
                for kind in ("Phi", "G", "A", "B")}
    return dataclasses.replace(res, f=u["f"].reshape(T1, Pa).copy(), **two_time)


def divergence(column_at, res, lay: _Layout, q, eps: float):
    """sum_k d/dq'_k of ``column_at(point, k)`` by central differences at q'* +- eps e_k, each
    ``point`` a copy of ``res`` holding the shifted order parameters (q: indices of q' in v)."""
    v0 = flatten(res, lay)
    div = np.zeros(q.size)
    for k in range(q.size):
        sides = []
        for sign in (1.0, -1.0):
            v = v0.copy()
            v[q[k]] += sign * eps
            sides.append(column_at(at_point(res, lay, v), k))
        div += (sides[0] - sides[1]) / (2 * eps)
    return div


def dense_divergence(blocks_at, res, lay: _Layout, tf: dict, Sigma, R, eps: float, noise_term: bool = True):
    """The divergence of column k of 1/2 D'(q') Sigma + kappa'(q') R^T (module docstring), with
    ``blocks_at(point)`` returning the theory-form blocks (``I_minus_D``, ``kappa``) there.
    ``noise_term=False`` drops kappa' (the ablation keeping the curvature 1/2 F''[Sigma] only);
    the constant I Sigma e_k / 2 drops out of the derivative."""
    def column_at(point, k):
        tk = blocks_at(point)
        return -0.5 * tk["I_minus_D"] @ Sigma[:, k] + (tk["kappa"] @ R[k] if noise_term else 0.0)
    return divergence(column_at, res, lay, tf["q"], eps)


def shift_observables(res, lay, shift, Sigma, q):
    """f's and the equal-time kernels' corrections on training points and the NTK's linear
    part (``propagator.observable_rows`` applied to the shift), plus the NTK's second-order
    part sum_l N Cov(G^{l+1}(t,t), Phi^l(t,t)) from Sigma."""
    T1, Pa, P, n = res.t.size, res.f.shape[1], res.P, lay.n
    rows = {name: r[:, 0] for name, r in observable_rows(res, lay, R=shift[:, None]).items()}
    f_bias = rows.pop("f").reshape(T1, Pa)
    kernels = {name: r.reshape(T1, P, P) for name, r in rows.items()}
    t, a, b = np.meshgrid(np.arange(T1), np.arange(P), np.arange(P), indexing="ij")
    entry = (t * Pa + a) * n + t * Pa + b                          # (t, a, b) -> kernel entry
    where = np.full(lay.size, -1)
    where[q] = np.arange(q.size)                                   # v index -> q' index
    for l in range(1, res.L):
        ig = where[lay.slices[f"G{l + 1}"].start + entry]
        ip = where[lay.slices[f"Phi{l}"].start + entry]
        kernels["K"] = kernels["K"] + Sigma[ig, ip]
    return f_bias, kernels
