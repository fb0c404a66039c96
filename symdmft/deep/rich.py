"""Deep MLPs in the rich regime: the infinite-width site process with responses (THEORY.md §2).

``solve_rich(net, data, grid, ...)`` returns a ``RichResult``; ``sd.solve`` calls it for
``hidden_layers >= 2``. The stages (ARCHITECTURE.md habit 1):

    sources (rich_sources) -> causal frontier over time steps (rich_frontier), which integrates
    the per-layer site paths (rich_site) and takes the responses A, B by exact adjoint sweeps
    (rich_responses) -> fixed-point residual -> RichResult.

The sampling solver works for every activation, ``linear`` included, so the closed-form deep
linear solver (``deep.linear_rich``, THEORY.md §2 "Deep linear networks") can be checked
against it. ``solve_rich_sampled`` also takes ``responses`` for the ablations of THEORY.md §2:
``"no_equal_time_B"`` drops the equal-time part of B, ``"none"`` drops A and B (the gradient
independence ansatz); both are wrong on purpose and exist to be compared with simulation.
"""
from __future__ import annotations

import numpy as np

from ..arch.activations import refuse_kink
from ..arch.mlp import MLP
from ..problem import Data, TimeGrid
from ..runtime.samplers import check_sampling
from .rich_frontier import RESPONSES, run_frontier
from .rich_result import RichResult
from .rich_sources import SourceLayout, draw_sources

# A replayed saddle must reproduce its order parameters to rounding (the frontier computes
# each one once from final paths); anything larger is a bookkeeping error, not noise.
REPLAY_TOL = 1e-8
# Deep nonlinear nets: sd.solve adds the dense site-average propagator while (steps+1) P_all
# is at most PROPAGATOR_N, with PROPAGATOR_SITES sites per layer (n = 12: 32 s at L = 2, 61 s
# at L = 3). The site averages' error on the exact t = 0 variances (L = 2, tanh, eight Sobol
# seeds, n = 4): 2.1% at 4096 sites, 2.0% at 8192, 1.1% at 16384, 0.27% at 65536; at n = 12
# (four seeds) 5.6%, 2.4%, 1.1% at 4096, 8192, 16384: their polynomial tails, not the dimension.
PROPAGATOR_N = 12
PROPAGATOR_SITES = 16384


def _check_inputs(net, data, grid, samples, seed, sampler, responses, min_layers=2):
    for name, value, kind in (("net", net, MLP), ("data", data, Data), ("grid", grid, TimeGrid)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a symdmft {kind.__name__}, got {type(value).__name__}")
    if net.hidden_layers < min_layers:
        raise ValueError(f"net must have hidden_layers >= {min_layers} for the deep solver, got "
                         f"{net.hidden_layers} (two-layer nets: sd.solve)")
    refuse_kink(net.activation, net.activation_name, "the response functions A, B",
                "for relu, L = 2, gamma0 = 1 the kernel traces came out up to 3% off trained networks")
    samples, seed = check_sampling(samples, seed, sampler)
    if responses not in RESPONSES:
        raise ValueError(f"responses must be one of {RESPONSES}, got {responses!r}")
    return samples, seed


def replay_residual(est, replayed) -> float:
    """max over order parameters of max |F(q) - q| / max(1, max |q|)."""
    worst = 0.0
    for name, q in est.arrays().items():
        Fq = replayed.arrays()[name]
        worst = max(worst, float(np.max(np.abs(Fq - q), initial=0.0) / max(1.0, np.max(np.abs(q), initial=0.0))))
    return worst


def solve_rich(net, data, grid, samples: int = 40_000, seed: int = 0, sampler: str = "auto",
               progress: bool | None = None, checkpoint=None, bias: bool = False) -> RichResult:
    """Infinite-width rich-regime dynamics of a deep MLP (L >= 2) by sampling the site process
    (deep linear nets: the closed form, with the matrix-free propagator).

    ``samples`` sites (rounded up to a power of two for QMC); ``sampler`` 'auto'/'qmc'
    (scrambled Sobol, seeded) or 'mc'. Accuracy: the site averages carry the QMC error, and
    because they drive the sites again (a closed loop) the saddle also carries its second-order
    bias, O(1/n) like a finite-width correction with n in place of N. For tanh nets at 8192
    sites both are ~1e-3 on kernels of size 1; deep linear nets with fast-growing kernels
    (L = 3, gamma0 = 1.5) show 1.6e-3 relative at 32768 sites against the closed form (MC:
    ~5e-2, hence QMC by default). Memory: about ``8 n (steps+1) P_all (10 L - 4)`` bytes
    for n sites (six stored fields per layer; per inner source its normals and its QR
    directions); time grows as
    ``n L (steps+1)^3 P_all^3`` (the response sweeps): 65536 sites, 40 steps, L = 2 take ~25 s.
    ``checkpoint``: deep linear nets save the matrix-free propagator's finished parts there
    and resume from them (``solve_linear_matrix_free``); sampled nets do not use it.
    ``bias=True``: the O(1/N) mean corrections ``f_bias``, ``kernels_bias`` (deep linear nets
    with (steps+1) P_all <= linear_bias.DENSE_N, ``deep.linear_bias``; smooth nonlinear nets
    with (steps+1) P_all <= nonlinear_bias.BIAS_N whose source covariances stay well
    conditioned, in practice the first 1-3 steps, ``deep.nonlinear_bias``).
    """
    _check_inputs(net, data, grid, samples, seed, sampler, "full")
    if bias:
        _check_bias(net, data, grid)
    if net.activation_name == "linear":
        res = _solve_deep_linear(net, data, grid, checkpoint)
        if bias:
            from .linear_bias import linear_mean_correction
            (res.f_bias, res.kernels_bias), _, _ = linear_mean_correction(net, data, grid, saddle=res)
        return res
    res = solve_rich_sampled(net, data, grid, samples=samples, seed=seed, sampler=sampler,
                             progress=progress)
    n = (grid.steps + 1) * data.P_all
    if n > PROPAGATOR_N:
        res.params["fluctuations"] = (f"(steps+1) P_all = {n} > {PROPAGATOR_N}: the dense propagator of "
                                      f"deep nonlinear nets (deep.propagator) costs ~(2n)^5 per site; "
                                      f"call it directly for larger problems, or "
                                      f"sd.deep.solve_nonlinear_matrix_free for chosen "
                                      f"observables (its cost is per observable)")
        return res
    from .propagator import solve_deep_propagator
    saddle = res
    res = solve_deep_propagator(net, data, grid, saddle, samples=PROPAGATOR_SITES, seed=seed)
    res.params["fluctuations"] = (f"dense propagator, site averages over {PROPAGATOR_SITES} Sobol "
                                  f"sites per layer")
    if bias:
        from .nonlinear_bias import BIAS_SITES, nonlinear_mean_correction
        (res.f_bias, res.kernels_bias), _, _ = nonlinear_mean_correction(net, data, grid, saddle, seed=seed)
        res.params["bias"] = (f"dense mean correction (deep.nonlinear_bias), site averages over "
                              f"{BIAS_SITES} Sobol sites per layer")
    return res


def _check_bias(net, data, grid) -> None:
    """NotImplementedError naming ``bias`` where the deep mean correction does not exist yet."""
    from .linear_bias import DENSE_N
    from .nonlinear_bias import BIAS_N
    n = (grid.steps + 1) * data.P_all
    if net.activation_name == "linear" and n > DENSE_N:
        raise NotImplementedError(
            f"bias=True: the deep linear mean correction is dense (deep.linear_bias) and takes "
            f"(steps+1) P_all <= {DENSE_N}; this problem has {n}")
    if net.activation_name != "linear" and n > BIAS_N:
        raise NotImplementedError(
            f"bias=True: the mean correction of deep nonlinear nets is dense (deep.nonlinear_bias: "
            f"2 |q'| ~ 8 L n^2 site-average Hessians) and takes (steps+1) P_all <= {BIAS_N}; this "
            f"problem has {n}; estimate it from sd.simulate at two widths (THEORY.md §5)")


def _solve_deep_linear(net, data, grid, checkpoint=None) -> RichResult:
    """Deep linear nets: the closed-form saddle (deep.linear_rich), exact, with N Cov f and the
    kernels' N Var, response fluctuations included, by the matrix-free propagator
    (deep.linear_matrix_free; the layers' kernel variances at its default steps). It equals
    the dense propagator (deep.linear_propagator, the reference) to rounding and is 30-70x
    faster already where that one fits (benchmarks/bench_deep_rich.py linear-propagator)."""
    from .linear_matrix_free import solve_linear_matrix_free
    res = solve_linear_matrix_free(net, data, grid, checkpoint=checkpoint)
    res.params["fluctuations"] = (f"matrix-free propagator; kernel variances at steps "
                                  f"{res.params['kernel_steps']}")
    return res


def solve_rich_sampled(net, data, grid, samples: int = 40_000, seed: int = 0, sampler: str = "auto",
                       progress: bool | None = None, responses: str = "full",
                       verify: bool = False) -> RichResult:
    """``solve_rich`` with the ablation switch ``responses`` and an optional full replay; it also
    takes L = 1 (the two-layer site, no responses: a reference for the deep propagator).

    ``verify=True`` runs the site process a second time driven by the solved order parameters
    and reports ``|F(q) - q|`` over all of them (A and B included); otherwise the residual covers
    the kernels and f, re-estimated from the final paths. Raises ``RuntimeError`` if the residual
    exceeds ``REPLAY_TOL``, ``FloatingPointError`` naming the step if the dynamics diverge.
    """
    samples, seed = _check_inputs(net, data, grid, samples, seed, sampler, responses, min_layers=1)
    Kx_all = data.Kx_all
    layout = SourceLayout(net.hidden_layers, grid.steps, data.P_all)
    draws = draw_sources(layout, samples, seed, sampler, Kx_all)
    # a diverging run is reported by run_frontier with its step, not by NumPy's warnings
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        est, paths = run_frontier(net, Kx_all, data.y, grid, draws, responses, progress=progress)
    if verify:
        replayed, _ = run_frontier(net, Kx_all, data.y, grid, draws, responses, frozen=est)
        residual, kind = replay_residual(est, replayed), "full replay: all order parameters"
    else:
        residual, kind = _path_residual(est, paths, draws.weights, net), "kernels and f from final paths"
    if not residual <= REPLAY_TOL:
        raise RuntimeError(f"deep saddle not self-consistent: residual {residual:.3g} > {REPLAY_TOL:g} "
                           f"({kind}); this is a bug, please report it")
    convergence = {"method": "causal frontier", "iterations": 1, "frontier_steps": grid.steps + 1,
                   "residual": residual, "residual_kind": kind,
                   "reason": "each step's order parameters need only earlier steps and equal-time "
                             "responses, so one pass over the time frontier is the fixed point"}
    params = {**net.describe(), **data.describe(), "eta": grid.eta, "steps": grid.steps,
              "samples": draws.n, "seed": seed, "sampler": draws.method, "responses": responses}
    return RichResult(t=grid.t, f=est.f, Phi=est.Phi, G=est.G, A=est.A, B=est.B, y=data.y.copy(),
                      Kx=Kx_all, convergence=convergence, params=params, y_test=data.y_test)


def _path_residual(est, paths, weights, net) -> float:
    """Kernels and f re-estimated in one piece from the final site paths, against the frontier's."""
    worst = 0.0
    for l, site in enumerate(paths):
        n, T1, P = site.h.shape
        for field, M in ((site.phi, est.Phi[l]), (site.g, est.G[l])):
            flat = field.reshape(n, T1 * P)
            # einsum, not BLAS: right after the Numba sweeps OpenBLAS threads contend for the
            # cores (measured 1 s instead of 1 ms for 8192 x 44 on a busy 2-core machine)
            full = np.einsum("nk,nl->kl", flat * weights[:, None], flat).reshape(T1, P, T1, P)
            worst = max(worst, float(np.max(np.abs(full - M)) / max(1.0, np.max(np.abs(M)))))
    top = paths[-1]
    f = np.einsum("i,itp->tp", weights, top.z * top.phi) / net.gamma0
    if net.center:
        f = f - f[0]
    worst = max(worst, float(np.max(np.abs(f - est.f)) / max(1.0, np.max(np.abs(est.f)))))
    return worst
