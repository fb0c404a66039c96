"""The O(1/N) mean correction of deep linear nets, response functions included: dense, small
problems (THEORY.md §3, "Mean (bias) correction").

In THEORY.md §3's coordinates (q' = kernels, f, A strictly causal, B causal; w' = their
conjugates, the anti-causal response entries among them; ``linear_action.theory_form``) the
deep action is

    S = w' . (q' - F(q')) + 1/2 w' kappa'(q') w' + O(w'^3),    S(q', 0) = 0 for causal q'.

The one-loop shift of the mean, <dx_i> = 1/(2N) G_ij S_jkl G_kl with G = -(S'')^{-1}
(G_q'q' = Sigma, G_q'w' = -R, G_w'w' = 0, R = (I - D')^{-1}), is then

    N (E q' - q'_inf) = R [ 1/2 F''[Sigma] + sum_kl (d kappa'_{.l} / d q'_k) R_kl ]:

THEORY.md §3's bias formula, with the responses. (The S_q'q'w' term drops: F_l depends only
on the q'_k before l in the causal order, where R_kl = 0; the w'w'w' term meets G_w'w' = 0.)
Both terms are one divergence, sum_k d/dq'_k of column k of

    Phi(q') = 1/2 D'(q') Sigma + kappa'(q') R^T        (Sigma, R held at the saddle),

taken by central differences of the dense theory-form blocks at q'* +- eps e_k (eps = 1e-5:
truncation ~eps^2, rounding ~1e-16 / eps, both ~1e-10 of O(1) entries). The blocks are the
exact Hessian at any causal q', not only at the saddle: their formulas only use that ln Z
and its causal derivatives vanish there. Cost: 2 |q'| dense Hessians.

The NTK is a sum of products of kernels, K = sum_l G^{l+1}(t,t) o Phi^l(t,t), so its
correction adds N Cov(G^{l+1}, Phi^l) (from Sigma) to the products of corrections and means.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .linear_action import action_hessian, theory_form
from .linear_propagator import site_kappa
from .linear_rich import check_linear_inputs, solve_linear_rich
from .linear_tangents import _Layout, _saddle_tangents, saddle_jacobian

# Central-difference step on the order parameters (entries O(1)): see the module docstring.
EPS = 1e-5
# sd.solve(bias=True) for deep linear nets while (steps+1) P_all is at most this: the dense
# Hessian is rebuilt 2 |q'| times (|q'| ~ 4 L n^2): L = 2, n = 7 / 10: 5 / 28 s.
DENSE_N = 10


def theory_blocks(res, lay: _Layout, g0, eta, P, Pa, center=False) -> dict:
    """``linear_action.theory_form`` of the dense Hessian at the order parameters held by
    ``res`` (any causal point): q' (indices into v), I - D' and kappa'."""
    out, geo = _saddle_tangents(res, lay, g0, eta, P, Pa)
    D = saddle_jacobian(res, lay, g0, eta, P, Pa)
    kappa = site_kappa(res, lay, g0, eta, P, Pa)
    if center:  # as solve_linear_propagator: the output is f(t) - f(0)
        sf, T1 = lay.slices["f"], res.t.size
        Tc = np.eye(lay.n)
        Tc[:, :Pa] -= np.kron(np.ones((T1, 1)), np.eye(Pa))
        D[sf] = Tc @ D[sf]
        kappa[sf] = Tc @ kappa[sf]
        kappa[:, sf] = kappa[:, sf] @ Tc.T
    return theory_form(lay, action_hessian(res, lay, out, geo, kappa, D, g0, eta), g0, res.t.size, Pa)


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


def linear_mean_correction(net, data, grid, saddle=None, eps: float = EPS, noise_term: bool = True):
    """N (E f - f_inf) (steps+1, P_all) and N (E K - K_inf) of the equal-time kernels and the
    NTK (dict, (steps+1, P, P)) of a deep linear net (module docstring); with the propagator
    Sigma over q' and q' itself. ``saddle``: ``solve_linear_rich``'s result, if at hand.
    ``noise_term=False`` drops the kappa' derivative (the noise's dependence on the order
    parameters), keeping only the curvature 1/2 F''[Sigma]: an ablation, wrong by a factor ~3."""
    check_linear_inputs(net, data, grid)
    res = solve_linear_rich(net, data, grid) if saddle is None else saddle
    g0, eta, P, Pa, T1 = net.gamma0, grid.eta, data.P, data.P_all, grid.steps + 1
    lay = _Layout(res.L, T1 * Pa)
    blocks = lambda v: theory_blocks(at_point(res, lay, v), lay, g0, eta, P, Pa, net.center)  # noqa: E731
    v0 = flatten(res, lay)
    tf = blocks(v0)
    q, m = tf["q"], tf["q"].size
    R = np.linalg.solve(tf["I_minus_D"], np.eye(m))
    Sigma = R @ tf["kappa"] @ R.T
    div = np.zeros(m)
    for k in range(m):
        column = []
        for sign in (1.0, -1.0):
            v = v0.copy()
            v[q[k]] += sign * eps
            tk = blocks(v)
            column.append(0.5 * (Sigma[:, k] - tk["I_minus_D"] @ Sigma[:, k])
                          + (tk["kappa"] @ R[k] if noise_term else 0.0))
        div += (column[0] - column[1]) / (2 * eps)
    shift = np.zeros(lay.size)
    shift[q] = R @ div
    return _observables(res, lay, lay.unpack(shift), Sigma, q), Sigma, q


def _observables(res, lay, shift, Sigma, q):
    """f's and the equal-time kernels' corrections on training points, the NTK's with the
    covariance of the kernel products."""
    T1, Pa = res.f.shape
    P, n, L = res.P, lay.n, res.L
    f_bias = shift["f"].reshape(T1, Pa).copy()
    t, a, b = np.meshgrid(np.arange(T1), np.arange(P), np.arange(P), indexing="ij")
    i, k = t * Pa + a, t * Pa + b                                  # (T1, P, P) row and column
    kernels = {f"{kind}{l}": shift[f"{kind}{l}"][i, k] for kind in ("Phi", "G") for l in range(1, L + 1)}
    where = np.full(lay.size, -1)
    where[q] = np.arange(q.size)                                   # v index -> q' index

    def cov(a, b):                                                 # N Cov of two kernels' entries
        ia = where[lay.slices[a].start + i * n + k]
        ib = where[lay.slices[b].start + i * n + k]
        return Sigma[ia, ib]
    eq = res.kernels
    K = kernels[f"Phi{L}"] + res.Kx[None, :P, :P] * kernels["G1"]
    for l in range(1, L):
        K = K + (kernels[f"G{l + 1}"] * eq[f"Phi{l}"] + eq[f"G{l + 1}"] * kernels[f"Phi{l}"]
                 + cov(f"G{l + 1}", f"Phi{l}"))
    kernels["K"] = K
    return f_bias, kernels
