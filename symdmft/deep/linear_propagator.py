"""Finite-width fluctuations of deep linear networks: the dense propagator (THEORY.md §3).

Order parameters v = (Phi^l, G^l for l = 1..L; A^l, B^l for l = 1..L-1; f), each two-time
object a full ((steps+1) P_all)^2 matrix (every entry a variable, anti-causal ones included),
f over (steps+1) P_all. The saddle map q -> <psi>_q is the layer map of THEORY.md §2: layer
l's site sees Phi^{l-1}, G^{l+1}, A^{l-1}, B^l and Delta = y - f (training points) and
returns Phi^l, G^l, A^l = M C, B^{l-1} = N E and (l = L) f by the correlator rule.

* D = d<psi>/dq: exact forward-mode derivative of those matrix equations (``linear_tangents``,
  batched over all coordinates; d(M) = gamma0^2 M (dC E + C dE) M).
* kappa: sites are Gaussian, so Isserlis gives Cov_site of h h^T, g g^T and g h / gamma0
  from the layer's <h h^T>, <g g^T>, <h g^T>; layers are independent (block-diagonal).
* The responses: the weight average couples A^l and B^l through -gamma0^2 tr(A^l B^l), and
  the anti-causal entries of B^l (of A^l) act as the conjugate field of A^l (of B^l). Their
  "noise" is the sensitivity of the site to anti-causal memory and the second derivative of
  the site's Jacobian determinant (``linear_action``). The propagator is -(H^{-1})_{vv} of the
  full Hessian H; equivalently (I - D')^{-1} kappa' (I - D')^{-T} once the anti-causal
  entries are read as conjugates. ``responses_noise=False`` drops them: the plain
  (I - D)^{-1} kappa (I - D)^{-T} over the physical psi only, an ablation that is badly wrong
  (final NTK variance 3-4x too large, L = 2, 3; 4% off sd.lazy_solve even as gamma0 -> 0;
  tests/test_deep_linear_propagator.py).

Dense on purpose: a small-problem reference (L = 2-3, P = 1-2, ~10 steps; the Hessian has
about (4L - 1) ((steps+1) P_all)^2 rows) for the matrix-free propagator
(``deep.linear_matrix_free``, what sd.solve uses). Centred nets
(output f(t) - f(0)) use psi_f(t) - psi_f(0) and Delta = y - f_c.
"""
from __future__ import annotations

import numpy as np

from .linear_layer import LinearLayer
from .linear_rich import check_linear_inputs, solve_linear_rich
from .propagator import fill_fluctuations, observable_rows
from .rich_result import RichResult
from .linear_sweep import layer_inputs
from .linear_tangents import _Layout, _saddle_tangents, saddle_jacobian  # noqa: F401 (re-exported)


def site_kappa(res, lay: _Layout, g0, eta, P, Pa) -> np.ndarray:
    """kappa = Cov_site(psi, psi) by Isserlis, block-diagonal across layers (THEORY.md §3).

    psi: h_a h_b (Phi^l), g_a g_b (G^l), h_a g_a / gamma0 at layer L (f); none for A, B.
    """
    L, n, T1 = res.L, lay.n, res.t.size
    Phi = [x.reshape(n, n) for x in res.Phi]
    G = [x.reshape(n, n) for x in res.G]
    A, B = [x.reshape(n, n) for x in res.A], [x.reshape(n, n) for x in res.B]
    lower = np.kron(np.tril(np.ones((T1, T1)), -1), np.ones((Pa, Pa)))
    delta = np.zeros((T1, Pa))
    delta[:, :P] = res.delta
    W = lower * (eta * delta.reshape(1, n))
    pair = lambda U, V: (np.einsum("ac,bd->abcd", U, V) + np.einsum("ad,bc->abcd", U, V)).reshape(n * n, n * n)  # noqa: E731
    kappa = np.zeros((lay.size, lay.size))
    Phi0, Gtop = np.tile(res.Kx, (T1, T1)), np.ones((n, n))
    for l in range(1, L + 1):
        X, Y, Ab, Bb = layer_inputs(l, L, Phi, G, A, B, Phi0, Gtop)
        hh, gg, hg = LinearLayer(g0, X, Y, 0.0 if Ab is None else Ab, 0.0 if Bb is None else Bb, W).fields()
        sp, sg, sf = lay.slices[f"Phi{l}"], lay.slices[f"G{l}"], lay.slices["f"]
        kappa[sp, sp], kappa[sg, sg] = pair(hh, hh), pair(gg, gg)
        kappa[sp, sg] = pair(hg, hg)
        kappa[sg, sp] = kappa[sp, sg].T
        if l == L:
            hf = (np.einsum("ac,bc->abc", hh, hg) + np.einsum("ac,bc->abc", hg, hh)).reshape(n * n, n) / g0
            gf = (np.einsum("ca,bc->abc", hg, gg) + np.einsum("ac,cb->abc", gg, hg)).reshape(n * n, n) / g0
            kappa[sp, sf], kappa[sg, sf] = hf, gf
            kappa[sf, sp], kappa[sf, sg] = hf.T, gf.T
            kappa[sf, sf] = (hh * gg + hg * hg.T) / g0**2
    return kappa


def solve_linear_propagator(net, data, grid, responses_noise: bool = True) -> RichResult:
    """The saddle of ``solve_linear_rich`` plus N Cov f and N Var of the equal-time kernels.

    Fills ``f_cov`` (steps+1, P_all, steps+1, P_all) and ``kernels_var`` ("Phi1".."PhiL",
    "G1".."GL", "K"; (steps+1, P, P) on training points), leading order in 1/N (THEORY.md §3).
    """
    check_linear_inputs(net, data, grid)
    res = solve_linear_rich(net, data, grid)
    L, T1, P, Pa = res.L, res.t.size, data.P, data.P_all
    n = T1 * Pa
    lay = _Layout(L, n)
    out, geo = _saddle_tangents(res, lay, net.gamma0, grid.eta, P, Pa)
    D = saddle_jacobian(res, lay, net.gamma0, grid.eta, P, Pa)
    kappa = site_kappa(res, lay, net.gamma0, grid.eta, P, Pa)
    if net.center:  # the output is f(t) - f(0): psi_f -> T psi_f; the sites see Delta = y - f_c
        sf = lay.slices["f"]
        Tc = np.eye(n)
        Tc[:, :Pa] -= np.kron(np.ones((T1, 1)), np.eye(Pa))
        D[sf] = Tc @ D[sf]
        kappa[sf] = Tc @ kappa[sf]
        kappa[:, sf] = kappa[:, sf] @ Tc.T
    if responses_noise:
        from .linear_action import propagator_from_action
        Sigma = propagator_from_action(res, lay, out, geo, kappa, D, net.gamma0, grid.eta)
        R, kappa = np.eye(lay.size), Sigma
    else:
        R = np.linalg.solve(np.eye(lay.size) - D, np.eye(lay.size))   # (I - D)^{-1}
    fill_fluctuations(res, observable_rows(res, lay, R), lambda O: O @ kappa @ O.T)
    res.params["propagator"] = "dense deep linear (I - D)^-1 kappa (I - D)^-T"
    return res
