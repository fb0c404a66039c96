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

taken by central differences (eps = 1e-5: truncation ~eps^2, rounding ~1e-16 / eps, both
~1e-10 of O(1) entries) of one product each with the Hessian operator at q'* +- eps e_k
(``linear_operator.ActionOperator``, matrix-free). Its products are the exact Hessian at any
causal q', not only at the saddle: the formulas only use that ln Z and its causal
derivatives vanish there. Sigma and R are formed densely from the saddle's Hessian
(``linear_action``), so the problem must be small (``DENSE_N``).

The NTK is a sum of products of kernels, K = sum_l G^{l+1}(t,t) o Phi^l(t,t), so its
correction adds N Cov(G^{l+1}, Phi^l) (from Sigma) to the products of corrections and means.
The pieces any activation shares (the dense divergence, the observables of the shift) are
in ``deep.mean_shift``; ``deep.nonlinear_bias`` applies them to sampled site averages.
"""
from __future__ import annotations

import numpy as np

from .linear_action import action_hessian, theory_form
from .linear_operator import ActionOperator
from .linear_propagator import site_kappa
from .linear_rich import check_linear_inputs, solve_linear_rich
from .linear_tangents import _Layout, _saddle_tangents, saddle_jacobian
from .mean_shift import dense_divergence, divergence, shift_observables

# Central-difference step on the order parameters (entries O(1)): see the module docstring.
EPS = 1e-5
# sd.solve(bias=True) for deep linear nets while (steps+1) P_all is at most this: Sigma and
# R are dense |q'| x |q'| (|q'| ~ 4 L n^2) and the saddle's Hessian is formed once; L = 3,
# n = 24: 29 s, peak 2.3 GiB (n = 12: 3.4 s).
DENSE_N = 24


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


def linear_mean_correction(net, data, grid, saddle=None, eps: float = EPS, noise_term: bool = True,
                           reference: bool = False):
    """N (E f - f_inf) (steps+1, P_all) and N (E K - K_inf) of the equal-time kernels and the
    NTK (dict, (steps+1, P, P)) of a deep linear net (module docstring); with the propagator
    Sigma over q' and q' itself. ``saddle``: ``solve_linear_rich``'s result, if at hand.
    ``noise_term=False`` drops the kappa' derivative (the noise's dependence on the order
    parameters), keeping only the curvature 1/2 F''[Sigma]: an ablation, wrong by a factor ~3.
    ``reference=True`` rebuilds the dense blocks at every shifted point instead of one product
    with the operator (``_divergence_dense``: the same numbers, 11-28x slower at n = 7-10)."""
    check_linear_inputs(net, data, grid)
    res = solve_linear_rich(net, data, grid) if saddle is None else saddle
    g0, eta, P, Pa, T1 = net.gamma0, grid.eta, data.P, data.P_all, grid.steps + 1
    lay = _Layout(res.L, T1 * Pa)
    tf = theory_blocks(res, lay, g0, eta, P, Pa, net.center)
    q, m = tf["q"], tf["q"].size
    R = np.linalg.solve(tf["I_minus_D"], np.eye(m))
    Sigma = R @ tf["kappa"] @ R.T
    divergence = _divergence_dense if reference else _divergence
    div = divergence(res, lay, net, P, eta, tf, Sigma, R, eps, noise_term)
    shift = np.zeros(lay.size)
    shift[q] = R @ div
    return shift_observables(res, lay, shift, Sigma, q), Sigma, q


def _divergence(res, lay, net, P, eta, tf, Sigma, R, eps, noise_term):
    """sum_k d/dq'_k of column k of 1/2 D'(q') Sigma + kappa'(q') R^T, by central differences
    of one product each with the Hessian operator (``ActionOperator``, matrix-free) at
    q'* +- eps e_k. In the (v, w) coordinates of H, z = (a on q', scale * b on hat) gives
    scale * (H z)[hat] = (I - D') a + kappa' b; a = -Sigma e_k / 2 (the constant I Sigma e_k / 2
    drops out of the derivative), b = R^T e_k."""
    q, hat, scale = tf["q"], tf["hat"], tf["scale"]

    def column_at(point, k):
        z = np.zeros(lay.size + _w_size(lay))
        z[q] = -0.5 * Sigma[:, k]
        if noise_term:
            z[hat] += scale * R[k]
        op = ActionOperator(point, net.gamma0, eta, P, center=net.center)
        return scale * _apply_flat(op, lay, z)[hat]
    return divergence(column_at, res, lay, q, eps)


def _divergence_dense(res, lay, net, P, eta, tf, Sigma, R, eps, noise_term):
    """The reference for ``_divergence``: the same differences, of the dense theory-form
    blocks rebuilt from scratch at every q'* +- eps e_k."""
    return dense_divergence(lambda point: theory_blocks(point, lay, net.gamma0, eta, P, res.f.shape[1], net.center),
                            res, lay, tf, Sigma, R, eps, noise_term)


def _w_size(lay: _Layout) -> int:
    return sum(s.stop - s.start for name, s in lay.slices.items() if name[0] in "PG" or name == "f")


def _apply_flat(op: ActionOperator, lay: _Layout, z: np.ndarray) -> np.ndarray:
    """H z for one vector z in the flat (v, w) layout of ``linear_action.action_hessian``."""
    zv = {name: a[None].copy() for name, a in lay.unpack(z[:lay.size]).items()}
    zw, pos = {}, lay.size
    for name in op.zeros_w(0):
        size = lay.slices[name].stop - lay.slices[name].start
        zw[name] = z[pos:pos + size].reshape(zv[name].shape)
        pos += size
    hv, hw = op.apply(zv, zw)
    return np.concatenate([hv[name].reshape(-1) for name in lay.slices] + [hw[name].reshape(-1) for name in zw])
