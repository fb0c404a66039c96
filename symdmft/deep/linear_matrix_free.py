"""Finite-width fluctuations of deep linear nets, matrix-free: large problems (THEORY.md §3).

``solve_linear_matrix_free`` gives the same N Cov f and N Var of the equal-time kernels as
the dense ``linear_propagator`` without forming the Hessian: for each chosen observable c
(f at a step and point; one entry of an equal-time kernel Phi^l, G^l or the NTK), one
adjoint pass u = (I - D')^{-T} c back through the causal frontier
(``deep.linear_substitution``), then N Cov(c_a, c_b) = U_a . H U_b with one product with H
(``deep.linear_operator``; by symmetry without the transpose of D). Observables are
processed in chunks; nothing of size n^2 x n^2 exists.

Cost per observable: the adjoint pass ~ L P_all (steps+1)^3 P_all^2 flops and one product
with H ~ 70 L n^3 (n = (steps+1) P_all); memory ~ 8 (8L - 2) n^2 bytes per observable held
(all of f's, for their full covariance). L = 3, P = 4, 50 steps (1374 observables):
267 s, peak 3.3 GiB (``python benchmarks/bench_deep_rich.py linear-propagator``).
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from ..runtime.checkpoint import Checkpoint, problem_key
from .linear_operator import ActionOperator, adjoint_pairs
from .linear_rich import check_linear_inputs, solve_linear_rich
from .linear_substitution import Substitution
from .rich_result import RichResult

# The layers' kernel variances at every step up to this many steps + 1, else at this many
# evenly spaced steps (0 and the last included); the others are NaN. The NTK's: every step.
KERNEL_STEPS = 11


def check_kernel_steps(kernel_steps, steps: int, name: str = "kernel_steps") -> np.ndarray:
    """The steps at which kernel variances are computed; ValueError naming the parameter
    (``name``: how the caller calls it)."""
    if kernel_steps is None:
        if steps + 1 <= KERNEL_STEPS:
            return np.arange(steps + 1)
        return np.unique(np.round(np.linspace(0, steps, KERNEL_STEPS)).astype(int))
    if isinstance(kernel_steps, str) and kernel_steps == "all":
        return np.arange(steps + 1)
    ks = np.asarray(kernel_steps)
    if ks.ndim != 1 or ks.size == 0 or not np.issubdtype(ks.dtype, np.integer) \
            or ks.min() < 0 or ks.max() > steps:
        raise ValueError(f"{name} must be None, 'all' or a non-empty list of integer steps in "
                         f"[0, {steps}], got {kernel_steps!r}")
    return np.unique(ks)


def _kernel_specs(L, steps, T1, P):
    """(name, t, a, b) of every kernel entry asked for, a <= b (the entries are symmetric):
    the layers' kernels at ``steps``, the NTK at every step."""
    names = [f"Phi{l}" for l in range(1, L + 1)] + [f"G{l}" for l in range(1, L + 1)]
    pairs = [(a, b) for a in range(P) for b in range(a, P)]
    return ([(name, t, a, b) for name in names for t in steps for a, b in pairs]
            + [("K", t, a, b) for t in range(T1) for a, b in pairs])


def _kernel_rows(op: ActionOperator, res: RichResult, specs):
    """A batch of observables over q' for kernel entries; the NTK linearised as in
    ``propagator.observable_rows``: dK = sum_l dG^{l+1} Phi^l + G^{l+1} dPhi^l."""
    c, L, Pa = op.zeros_v(len(specs)), op.L, op.Pa
    eq = res.kernels                                          # equal-time kernels, (T1, P, P)
    Kx = res.Kx
    for j, (name, t, a, b) in enumerate(specs):
        i, k = t * Pa + a, t * Pa + b
        if name != "K":
            c[name][j, i, k] = 1.0
            continue
        c[f"Phi{L}"][j, i, k] += 1.0
        c["G1"][j, i, k] += Kx[a, b]
        for l in range(1, L):
            c[f"Phi{l}"][j, i, k] += eq[f"G{l + 1}"][t, a, b]
            c[f"G{l + 1}"][j, i, k] += eq[f"Phi{l}"][t, a, b]
    return c


def solve_linear_matrix_free(net, data, grid, kernel_steps=None, chunk: int = 32,
                             checkpoint=None) -> RichResult:
    """The closed-form saddle with N Cov f at every step and point, N Var of the NTK at every
    step and of the layers' equal-time kernels (Phi^l, G^l) at ``kernel_steps`` (None: every
    step up to KERNEL_STEPS, else KERNEL_STEPS evenly spaced; 'all'; or a list; NaN at the
    other steps), on training points; leading order in 1/N (THEORY.md §3). ``chunk``
    observables share one adjoint pass (memory ~ chunk * 100 n^2 bytes at the product with
    H). ``checkpoint``: a file where the finished parts (N Cov f, then the kernel variances
    chunk by chunk) are saved atomically as they are done; a rerun of the same problem with
    the same file continues from them (another problem's file: ValueError). The file is left
    in place. Bad arguments raise ValueError / TypeError naming the parameter before any work.
    """
    check_linear_inputs(net, data, grid)
    steps = check_kernel_steps(kernel_steps, grid.steps)
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    key = problem_key("deep linear matrix-free, layout 1", net.describe(), data.X_all, data.P,
                      data.y, grid.eta, grid.steps, steps)
    saved = Checkpoint(checkpoint, key)                       # read (and checked) before any work
    resumed = bool(saved.parts)
    res = solve_linear_rich(net, data, grid)
    # one BLAS thread: the row passes are many small products, where OpenBLAS threads only
    # contend (L = 3, P = 4, 30 steps: 25.6 s against 28.5 s with two, idle machine)
    with threadpool_limits(1):
        res = _fill(res, net, data, grid, steps, chunk, saved)
    if resumed:
        res.params["resumed_from"] = str(checkpoint)
    return res


def _fill(res, net, data, grid, steps, chunk, saved: Checkpoint) -> RichResult:
    """N Cov f (all of f's adjoints held: their full covariance) and the kernel variances;
    parts found in ``saved`` are not recomputed, new ones are saved there."""
    op = ActionOperator(res, net.gamma0, grid.eta, data.P, center=net.center)
    sub = Substitution(op)
    T1, Pa, P, n = res.t.size, data.P_all, data.P, op.n
    if saved.get("f_cov") is None:
        parts = []                                            # f at every (t, mu): full covariance
        for start in range(0, n, chunk):
            idx = np.arange(start, min(start + chunk, n))
            c = op.zeros_v(idx.size)
            c["f"][np.arange(idx.size), idx] = 1.0
            parts.append(adjoint_pairs(op, sub, c))
        U, V, R = (np.concatenate(x) for x in zip(*parts))
        del parts
        f_cov = U @ V.T + R @ U[:, :R.shape[1]].T
        del U, V, R
        saved.save(f_cov=(0.5 * (f_cov + f_cov.T)).reshape(T1, Pa, T1, Pa))
    res.f_cov = saved.get("f_cov")
    specs = _kernel_specs(res.L, steps, T1, P)
    values, done = saved.get("kernel_values"), saved.get("kernel_done")
    if values is None:
        values, done = np.full(len(specs), np.nan), np.zeros(len(specs), dtype=bool)
    todo = np.flatnonzero(~done)
    for start in range(0, todo.size, chunk):
        idx = todo[start:start + chunk]
        U, V, R = adjoint_pairs(op, sub, _kernel_rows(op, res, [specs[j] for j in idx]))
        values[idx] = np.einsum("km,km->k", U, V) + np.einsum("km,km->k", R, U[:, :R.shape[1]])
        done[idx] = True
        saved.save(kernel_values=values, kernel_done=done)
    var = {name: np.full((T1, P, P), np.nan) for name, *_ in specs}
    for (name, t, i, k), v in zip(specs, values):
        var[name][t, i, k] = var[name][t, k, i] = v
    res.kernels_var = var
    res.params = {**res.params, "propagator": "matrix-free deep linear: adjoint passes through the "
                  "causal frontier, products with the action's Hessian",
                  "kernel_steps": [int(s) for s in steps]}
    return res
