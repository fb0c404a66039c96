"""Finite-width fluctuations of deep nonlinear nets without the dense Hessian (THEORY.md §3).

In THEORY.md §3's coordinates (``linear_action.theory_form``: q' = kernels, f, A strictly
causal, B causal; w' their conjugates, the anti-causal entries of B and A for A and B)

    N Cov(c_a, c_b) = u_a kappa' u_b,     u = (I - D')^{-T} c,

and both factors come from per-site derivatives of the layers' site averages:

* ``NonlinearOperator.vjp``: D'^T y. Each layer's outputs (Phi^l, G^l, A^l, B^{l-1}, f) are
  site averages given its inputs (memories C_l = A^{l-1} + W o Phi^{l-1}, E_l = B^l +
  W o G^{l+1}, source covariances X_l = Phi^{l-1}, Y_l = G^{l+1}, W = eta Theta Delta(f)):
  the memories' cotangent by the site adjoint (``deep.site_adjoint``), the covariances' by
  Price's theorem (``deep.site_price``), then the chain rule back to q'.
* ``backward``: (I - D')^T u = c by substitution, one group of q' at a time in the reverse
  of the causal frontier's order (time slice k descending; within it f(k), the backward
  chain G^l, B^{l-1} for l = 1..L, the forward chain Phi^l, A^l for l = L..1): a group's u is
  final once every group that depends on it is done, and its D'^T adds only to earlier groups.
  This is the reference: one layer VJP per group, O(sites n^3) each, (steps + 1)(2L + 1) per
  observable. ``solve_nonlinear_matrix_free`` uses the same substitution by accumulation
  (``deep.nonlinear_sweep``: O(steps P_all n^2) per site and observable), equal to it to
  rounding.
* ``kappa``: u_a kappa' u_b summed over layers (``deep.site_noise``): the conjugate placement
  of u is the linear one (``linear_operator._hat``), w on the kernels and f, and
  -u(A^l)^T / gamma0^2, -u(B^{l-1})^T / gamma0^2 on the anti-causal memories E_l, C_l.

Every layer uses the dense propagator's sites (same rule and source root), so the two agree
to rounding (tests/test_nonlinear_matrix_free.py). The cost is per observable, so this pays
where the dense Hessian does not fit and a few observables are wanted (docs/deep_fluctuations.md).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ..runtime.samplers import make_rule
from .linear_matrix_free import _kernel_rows, _kernel_specs, check_kernel_steps
from .linear_tangents import _Layout, saddle_geometry
from .nonlinear_sweep import Sweep
from .propagator import check_inputs
from .rich_result import RichResult
from .site_action import layer_source_rule
from .site_adjoint import SiteState, site_adjoint, state_vjp
from .site_noise import layer_noise
from .site_price import price_cotangents


@dataclass(eq=False)
class _Layer:
    """One layer at the saddle: its source covariances X, Y, its sites (``state``: fields,
    memories C, E and M = J^{-1}) with their weights."""
    X: np.ndarray
    Y: np.ndarray
    wt: np.ndarray
    center: bool            # the output f is centred (last layer of a centred net)
    state: SiteState
    price: tuple            # source kinds whose covariance is an order parameter


class NonlinearOperator:
    """D'^T and kappa' of a deep nonlinear net at its saddle (a RichResult); vectors are dicts
    over the names of ``_Layout`` ((n, n) arrays, f (n,))."""

    def __init__(self, net, saddle: RichResult, grid, P: int, make_rule_for):
        L, T1, Pa = saddle.L, saddle.t.size, saddle.f.shape[1]
        n = T1 * Pa
        self.L, self.T1, self.Pa, self.n = L, T1, Pa, n
        self.g0, self.eta, self.phis = net.gamma0, grid.eta, net.numpy_derivatives(4)
        self.lay = _Layout(L, n)
        Phi, G, A, B, self.W, self.lower, self.train = saddle_geometry(saddle, grid.eta, P)
        self.t_of = np.repeat(np.arange(T1), Pa)
        self.strict = self.t_of[:, None] > self.t_of[None, :]
        self.weak = self.t_of[:, None] >= self.t_of[None, :]
        self.layers = []
        for l in range(1, L + 1):
            X, Y = Phi[l - 1], G[l]
            C = ((A[l - 2] if l > 1 else 0.0) + X * self.W) * self.strict
            E = ((B[l - 1] if l < L else 0.0) + Y * self.W) * self.weak
            U, rule = layer_source_rule(X, Y, lambda dim, l=l: make_rule_for(l, dim))
            s = rule.zeta @ U.T
            u, r = s[:, :n], s[:, n:]
            kinds, center = ("u",) * (l > 1) + ("r",) * (l < L), net.center and l == L
            self.layers.append(_Layer(X, Y, rule.weights, center, SiteState(u, r, C, E, self.g0, Pa, self.phis),
                                      kinds))

    def zeros(self) -> dict:
        return {name: v[0] for name, v in self.zeros_v(1).items()}

    def zeros_v(self, k: int) -> dict:
        """k vectors over q' (the batch layout ``linear_matrix_free._kernel_rows`` fills)."""
        n = self.n
        out = {name: np.zeros((k, n, n)) for name in self.lay.slices if name != "f"}
        out["f"] = np.zeros((k, n))
        return out

    def vjp(self, y: dict, k: int | None = None) -> dict:
        """D'^T y, on q' (A strictly causal, B causal). ``k``: y lives on time slices <= k, so
        only the first (k + 1) P_all indices of every layer are involved (causality)."""
        L, n = self.L, self.n
        m = n if k is None else (k + 1) * self.Pa
        lead = lambda a: a[:m, :m] if a.ndim == 2 else a[:m]       # noqa: E731
        out = self.zeros()
        for l, ly in enumerate(self.layers, start=1):
            bars = self.layer_bars(y, l)
            if not any(np.any(b) for b in bars.values()):
                continue
            bars = {key: lead(b) for key, b in bars.items()}
            st = ly.state if m == n else ly.state.leading(m)
            adjoint = site_adjoint(st, bars, self.Pa, ly.center, factors=True)
            cot = state_vjp(st, bars, ly.wt, self.Pa, ly.center, adjoint=adjoint)
            Cb, Eb = np.zeros((n, n)), np.zeros((n, n))
            Cb[:m, :m], Eb[:m, :m] = cot.C, cot.E
            Cb, Eb = Cb * self.strict, Eb * self.weak
            price = (price_cotangents(st, bars, ly.wt, self.Pa, ly.center, ly.price, adjoint=adjoint)
                     if ly.price else {})
            if l > 1:
                out[f"A{l - 1}"] += Cb
                out[f"Phi{l - 1}"] += Cb * self.W
                out[f"Phi{l - 1}"][:m, :m] += price["u"]
            if l < L:
                out[f"B{l}"] += Eb
                out[f"G{l + 1}"] += Eb * self.W
                out[f"G{l + 1}"][:m, :m] += price["r"]
            # W(t, s) = eta 1[s<t] Delta(s), dDelta = -df on training points
            out["f"] += -self.eta * self.train * (np.einsum("ij,ij->j", Cb, ly.X * self.lower)
                                                  + np.einsum("ij,ij->j", Eb, ly.Y * self.lower))
        for l in range(1, L):
            out[f"A{l}"] *= self.strict
            out[f"B{l}"] *= self.weak
        return out

    def layer_bars(self, y: dict, l: int) -> dict:
        """The pairing of layer l's outputs with y (a vector over q'): the bars of
        ``deep.site_adjoint`` (A^l = <d phi / d r> / gamma0, B^{l-1} = <d g / d u> / gamma0)."""
        bars = {"Phi": y[f"Phi{l}"], "G": y[f"G{l}"]}
        if l < self.L:
            bars["A"] = y[f"A{l}"] / self.g0
        if l > 1:
            bars["B"] = y[f"B{l - 1}"] / self.g0
        if l == self.L:
            bars["f"] = y["f"]
        return bars

    @staticmethod
    def group_layer(group: dict, L: int) -> int:
        """The layer whose outputs a frontier group (``groups``) holds: Phi^l, A^l; G^l, B^{l-1}; f (L)."""
        name = next(iter(group))
        return L if name == "f" else int(name.lstrip("PhiG"))

    def groups(self, k: int) -> list:
        """The q' entries of time slice k in the causal frontier's order, as {name: mask}."""
        L, t = self.L, self.t_of
        on_slice = np.maximum(t[:, None], t[None, :]) == k
        row = np.broadcast_to(t[:, None] == k, on_slice.shape)
        out = []
        for l in range(1, L + 1):
            out.append({f"Phi{l}": on_slice, **({f"A{l}": row & self.strict} if l < L else {})})
        for l in range(L, 0, -1):
            out.append({f"G{l}": on_slice, **({f"B{l - 1}": row & self.weak} if l > 1 else {})})
        out.append({"f": t == k})
        return out

    def backward(self, c: dict) -> dict:
        """u = (I - D')^{-T} c by substitution (module docstring)."""
        u = {name: np.array(v, dtype=float) for name, v in c.items()}
        for k in range(self.T1 - 1, -1, -1):
            for group in reversed(self.groups(k)):
                y = self.zeros()
                for name, mask in group.items():
                    y[name] = u[name] * mask
                for name, d in self.vjp(y, k).items():
                    u[name] += d
        return u

    def directions(self, u: dict, l: int) -> dict:
        """Layer l's conjugate direction of u (module docstring)."""
        L, g2, zero = self.L, self.g0**2, np.zeros((self.n, self.n))
        return {"Phi": u[f"Phi{l}"], "G": u[f"G{l}"], "f": u["f"] if l == L else np.zeros(self.n),
                "C": -u[f"B{l - 1}"].T / g2 if l > 1 else zero, "E": -u[f"A{l}"].T / g2 if l < L else zero}

    def kappa(self, us: list, diagonal=False) -> np.ndarray:
        """(k, k): u_a kappa' u_b; ``diagonal``: (k,), u_a kappa' u_a only."""
        return sum(layer_noise(ly.state, [self.directions(u, l) for u in us], ly.wt, self.Pa, ly.center,
                               diagonal=diagonal) for l, ly in enumerate(self.layers, start=1))


def _steps(value, name: str, steps: int) -> np.ndarray:
    """None: every step; () or []: none; else ``linear_matrix_free.check_kernel_steps``."""
    if value is None:
        return np.arange(steps + 1)
    if isinstance(value, (list, tuple)) and len(value) == 0:
        return np.zeros(0, dtype=int)
    return check_kernel_steps(value, steps, name)


def solve_nonlinear_matrix_free(net, data, grid, saddle: RichResult, samples: int = 2**14, seed: int = 0,
                                sampler: str = "qmc", rule=None, f_steps=None, kernel_steps=None) -> RichResult:
    """A copy of ``saddle`` with N Cov f and N Var of the equal-time kernels and the NTK, as
    ``propagator.solve_deep_propagator`` (same arguments, same sites, same numbers to
    rounding) but by adjoint substitution and kappa' products instead of the dense Hessian,
    for chosen observables only: N Cov f between the points and steps of ``f_steps``, the
    kernels' and the NTK's N Var at ``kernel_steps`` (None: every step; () : none; or a list
    of steps); NaN elsewhere. The cost is per observable, ~n^3 per site (n = (steps+1) P_all;
    tanh L = 3, P = 4, 50 steps, 512 sites: ten minutes each), and the memory ~4 (2n)^2 numbers
    per site and layer (12.9 GiB there): ``samples`` is bounded by memory at large n."""
    check_inputs(net, data, grid, saddle, samples, seed, sampler)
    f_at, k_at = _steps(f_steps, "f_steps", grid.steps), _steps(kernel_steps, "kernel_steps", grid.steps)
    make_rule_for = rule or (lambda l, dim: make_rule(dim, samples, seed + 7919 * l, sampler))
    # one BLAS thread: per-site products of small matrices, where OpenBLAS threads only contend
    # (stacked 48 x 48 products: 20 GFlop/s on one thread against 5 with two)
    with threadpool_limits(1):
        return _solve(net, data, grid, saddle, make_rule_for, samples, f_at, k_at)


def _solve(net, data, grid, saddle, make_rule_for, samples, f_at, k_at) -> RichResult:
    op = NonlinearOperator(net, saddle, grid, data.P, make_rule_for)
    sweep = Sweep(op)
    T1, Pa, P, n = op.T1, op.Pa, data.P, op.n
    res = dataclasses.replace(saddle, params={**saddle.params, "propagator": "matrix-free deep nonlinear: "
                                              "adjoint substitution with site-average VJPs, kappa' products",
                                              "propagator_samples": samples, "f_steps": [int(t) for t in f_at],
                                              "kernel_steps": [int(t) for t in k_at]})
    idx = (f_at[:, None] * Pa + np.arange(Pa)[None, :]).reshape(-1)
    us = []
    for i in idx:
        c = op.zeros()
        c["f"][i] = 1.0
        us.append(sweep.backward(c))
    f_cov = np.full((n, n), np.nan)
    if us:
        f_cov[np.ix_(idx, idx)] = op.kappa(us)
    res.f_cov = f_cov.reshape(T1, Pa, T1, Pa)
    specs = _kernel_specs(op.L, k_at, T1, P)
    specs = [s for s in specs if s[0] != "K" or s[1] in k_at]          # the NTK at kernel_steps too
    rows = _kernel_rows(op, res, specs) if specs else op.zeros_v(0)
    us = [sweep.backward({name: v[j] for name, v in rows.items()}) for j in range(len(specs))]
    values = op.kappa(us, diagonal=True) if us else []
    var = {name: np.full((T1, P, P), np.nan) for name in [f"Phi{l}" for l in range(1, op.L + 1)]
           + [f"G{l}" for l in range(1, op.L + 1)] + ["K"]}
    for (name, t, a, b), v in zip(specs, values):
        var[name][t, a, b] = var[name][t, b, a] = v
    res.kernels_var = var
    return res
