"""``sd.solve``: the whole theory pipeline for one problem (THEORY.md §2-3).

The body of ``solve`` is the list of stages (ARCHITECTURE.md habit 1):
site process -> lowered IR -> generated module -> sources -> saddle (one forward pass)
-> propagator (causal forward substitution) -> covariances.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed

import numba
import numpy as np
from tqdm import tqdm

from ..arch.activations import refuse_kink
from ..codegen.cache import load
from ..codegen.module import BACKENDS
from ..lower import lower
from ..model.site import TwoLayerSite, with_ntk
from ..observables.bias import mean_correction
from ..observables.fluctuations import all_gains, fluctuations, response_matrix
from ..observables.result import Result
from ..progress import show_progress
from .samplers import check_sampling, covariance_root, make_rule


def _diverged(what: str, k: int, eta: float) -> FloatingPointError:
    return FloatingPointError(
        f"{what} diverged at step {k} (t = {k * eta:g}): predictions or kernels became "
        f"non-finite; reduce eta (now {eta:g}) below about 2 / lambda_max(K)")


def propagate(module, args, threads: int, progress=None):
    """Run the propagator's independent direction batches as parts on ``threads`` threads.

    The generated Numba ``propagate`` releases the GIL, so parts run concurrently; their
    outputs cover disjoint directions and are summed. Four parts per thread balance the
    load dynamically and drive a progress bar (on a terminal only).
    """
    n_parts = 4 * max(threads, 1)
    bar = tqdm(total=n_parts, desc="propagator", unit="part", disable=not show_progress(progress))
    dF = dK = 0.0
    with bar, ThreadPoolExecutor(max(threads, 1)) as pool:
        for part in as_completed([pool.submit(module.propagate, *args, p, n_parts)
                                  for p in range(n_parts)]):
            F, K = part.result()
            dF, dK = dF + F, dK + K
            bar.update()
    return dF, dK


def solve(net, data, grid, samples: int = 40_000, seed: int = 0, sampler: str = "auto",
          backend: str = "numba", bias: bool = False, progress: bool | None = None,
          allow_kinks: bool = False, checkpoint=None) -> Result:
    """Infinite-width dynamics and leading-order N Cov of predictions and kernels.

    ``samples`` quadrature points of the sources (u, w(0)) (THEORY.md §2), drawn by
    ``sampler`` (see ``symdmft.runtime.samplers``); ``backend`` 'numba' (fast) or 'numpy'
    (reference; two-layer nets: the deep solvers have one implementation each). ``progress``: a bar over the propagator's parts (None: only on a
    terminal). ``bias=True`` adds the O(1/N) mean corrections ``f_bias`` and
    ``kernels_bias`` (THEORY.md §3; costs one second-order sweep per Delta direction; deep nets:
    linear ones on small problems, ``deep.linear_bias``; others raise NotImplementedError).
    All inputs are checked before anything is compiled. ``checkpoint``: a file where a long
    run saves its finished parts, to resume from them when rerun on the same problem (the
    matrix-free propagator of deep linear nets, ``deep.solve_linear_matrix_free``); the other
    solvers run in one pass and do not use it.

    Kinked activations (relu, |h|, ...; ``arch.activations.has_kink``) raise
    ``NotImplementedError``: phi'' has a Dirac mass whose contribution (sites crossing the
    kink) the pathwise propagator misses, so N Cov would be silently wrong after t = 0 (relu:
    N Var f 8-14% low against trained networks at t = 2). ``allow_kinks=True`` accepts that
    approximation: exact at t = 0, and the same computation in both backends.
    """
    samples, seed = check_sampling(samples, seed, sampler)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not allow_kinks:
        refuse_kink(net.activation, net.activation_name, "the propagator",
                    "finite-width results after t = 0 would be wrong (relu: N Var f 8-14% low "
                    "against trained networks)", ", sd.simulate, or allow_kinks=True to accept "
                    "the pathwise approximation (exact at t = 0)")
    if net.hidden_layers >= 2:
        # Deep nets in the rich regime: a site process with response functions (THEORY.md §2).
        from ..deep.rich import solve_rich
        return solve_rich(net, data, grid, samples=samples, seed=seed, sampler=sampler,
                          progress=progress, checkpoint=checkpoint, bias=bias)
    site = TwoLayerSite(net)
    module = load(lower(site), net.activation_name, backend)

    rule = make_rule(data.P_all + 1, samples, seed, sampler)
    h0 = np.ascontiguousarray(rule.zeta[:, :data.P_all] @ covariance_root(data.Kx_all).T)
    w0 = np.ascontiguousarray(rule.zeta[:, data.P_all])
    kx = np.ascontiguousarray(data.Kx)
    H, W, f, kernels, diverged = module.forward(h0, w0, rule.weights, data.y, kx, grid.eta,
                                                net.gamma0, grid.steps, net.center)
    if diverged >= 0:
        raise _diverged("the infinite-width dynamics", diverged, grid.eta)
    delta_path = np.ascontiguousarray(data.y[None, :] - f[:, :data.P])
    ACT = module.site_activations(H)
    n_chunk = 4 * numba.get_num_threads()
    dF, dK = propagate(module, (H, W, ACT, rule.weights, delta_path, kx, grid.eta, net.gamma0),
                       threads=numba.get_num_threads() if backend == "numba" else 1,
                       progress=progress)

    kx_train = kx[:data.P]
    means = with_ntk({name: kernels[:, n] for n, (name, _) in enumerate(site.kernels)}, kx_train)
    R = response_matrix(dF, data.P_all)
    gains = all_gains(dK, data.P_all, kx_train, site.kernels)
    f_cov, kernel_var = fluctuations(module, H, W, rule.weights, f, means, R, gains, net.gamma0,
                                     net.center, kx_train, site.kernels)
    bad = [k for k in range(grid.steps + 1) if not np.all(np.isfinite(f_cov[k, :, k]))]
    if bad:
        raise _diverged("the finite-width propagator", bad[0], grid.eta)
    f_bias = kernel_bias = None
    if bias:
        f_bias, kernel_bias = mean_correction(module, H, W, ACT, rule.weights, f, delta_path, kx,
                                              grid.eta, net.gamma0, net.center, R, gains, f_cov,
                                              site.kernels, n_chunk)
    params = {**net.describe(), **data.describe(), "eta": grid.eta, "steps": grid.steps,
              "samples": rule.n, "seed": seed, "sampler": rule.method, "backend": backend}
    return Result(grid.t, f, f_cov, means, kernel_var, data.y.copy(), params,
                  f_bias=f_bias, kernels_bias=kernel_bias, y_test=data.y_test)
