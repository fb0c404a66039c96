"""Emit a solver module for a lowered site process (ARCHITECTURE.md, codegen/).

``emit(lowered, backend)`` fills the driver templates of ``templates.py`` with the
printed IR blocks. Output is deterministic (same IR, byte-identical source), so the
built-in modules in ``generated/`` can be checked for staleness by regenerating them.
"""
from __future__ import annotations

from string import Template

from ..lower.ir import Block, vector_temporaries
from . import templates
from .batched import BatchedTangentPrinter
from .printers import NumbaPrinter, NumPyPrinter

GENERATOR_VERSION = "1"
BACKENDS = ("numba", "numpy")

# Names the driver templates bind to slices of their own arrays (no scratch needed).
_BOUND = {"step": {"h_next"}, "features": set()}


def _scratch(block: Block, bound: set, indent: int) -> str:
    """``name = np.empty(n)`` for every vector temporary of ``block`` (Numba only)."""
    lines = [f"{' ' * indent}{n} = np.empty(n_{over})" for n, over in vector_temporaries(block, bound)]
    return "\n".join(lines) or f"{' ' * indent}pass"


def _chunk_scratch(block: Block, indent: int) -> tuple[str, str]:
    """Per-chunk temporaries: allocated outside the parallel loop, sliced inside it."""
    names = vector_temporaries(block)
    # rows spaced 8 apart so that chunks never share a cache line (false sharing)
    alloc = "\n".join(f"    {n}_all = np.empty((8 * n_chunk, n_{over}))" for n, over in names) or "    pass"
    bind = "\n".join(f"{' ' * indent}{n} = {n}_all[8 * c]" for n, _ in names) or f"{' ' * indent}pass"
    return alloc, bind


def _accumulate_numba(kernels, indent: int, tangent: bool) -> str:
    pad = " " * indent
    if not tangent:
        return "\n".join(f"{pad}kernels[k, {n}, mu, nu] += wi * {f}[mu] * {f}[nu]"
                         for n, (_, f) in enumerate(kernels))
    return "\n".join(f"{pad}dK[j, k, {n}, mu, nu] += wi * (d{f}[mu] * {f}[nu] + {f}[mu] * d{f}[nu])"
                     for n, (_, f) in enumerate(kernels))


def _accumulate_numpy(kernels, indent: int, tangent: bool) -> str:
    pad, lines = " " * indent, []
    for n, (_, f) in enumerate(kernels):
        if not tangent:
            lines.append(f"{pad}kernels[k, {n}] = (weights[:, None] * {f}[:, :n_train]).T @ {f}[:, :n_train]")
        else:
            lines.append(f"{pad}cross = (weights[:, None] * d{f}[:, :n_train]).T @ {f}[:, :n_train]")
            lines.append(f"{pad}dK[j, k, {n}] = cross + cross.T")
    return "\n".join(lines)


def _accumulate_second(kernels, numba: bool) -> str:
    """Second derivative of each kernel <x x^T>: d2x x^T + 2 dx dx^T + x d2x^T."""
    if numba:
        pad = " " * 24
        return "\n".join(
            f"{pad}d2K[j, k, {n}, mu, nu] += wi * (d2{f}[mu] * {f}[nu] + 2.0 * d{f}[mu] * d{f}[nu]"
            f" + {f}[mu] * d2{f}[nu])" for n, (_, f) in enumerate(kernels))
    pad, lines = " " * 12, []
    for n, (_, f) in enumerate(kernels):
        x, dx, d2x = (f"{p}{f}[:, :n_train]" for p in ("", "d", "d2"))
        lines.append(f"{pad}cross = (weights[:, None] * {d2x}).T @ {x}")
        lines.append(f"{pad}d2K[j, k, {n}] = cross + cross.T + 2.0 * (weights[:, None] * {dx}).T @ {dx}")
    return "\n".join(lines)


def _activation_fields(lowered, printer, numba: bool) -> dict:
    """Evaluate (``activations_<indent>``) or bind (``bind_activations_<indent>``) act<n>."""
    n_act = len(lowered.activations.statements)
    fields = {"n_act": n_act,
              "act_list": ", ".join(f"act{n}" for n in range(n_act)) + ("," if n_act == 1 else "")}
    for indent in (4, 8, 12, 16, 20):
        pad = " " * indent
        where = "k, i" if numba else "k"
        fields[f"activations_{indent}"] = printer.body(lowered.activations, indent)
        fields[f"bind_activations_{indent}"] = "\n".join(
            f"{pad}act{n} = ACT[{n}, {where}]" for n in range(n_act)) or f"{pad}pass"
    return fields


def _numba_fields(lowered) -> dict:
    """Scratch space, batched tangents and reductions of the Numba drivers."""
    fields = {}
    for name in ("features", "step"):
        fields["scratch_" + name] = _scratch(getattr(lowered, name), _BOUND[name], 4)
    for part, block, prefix in (("features", lowered.tangent_features, "cf"),
                                ("step", lowered.tangent_step, "cs")):
        batched = BatchedTangentPrinter(block, prefix)
        fields["batched_scratch_" + part] = batched.scratch(4)
        fields["batched_coefficients_" + part] = batched.coefficients(20)
        fields["batched_directions_" + part] = batched.directions(20)
    for name in ("tangent_features", "tangent_step", "second_features", "second_step"):
        fields["chunk_scratch_" + name], fields["chunk_bind_" + name] = \
            _chunk_scratch(getattr(lowered, name), 8)
    pairs = list(enumerate(f for _, f in lowered.kernels))
    fields["accumulate_batched"] = "\n".join(
        f"{' ' * 28}for j in range(n_active):\n{' ' * 32}acc_k[{n}, mu, nu, j] += "
        f"wi * (d{f}[mu, j] * {f}[nu] + {f}[mu] * d{f}[nu, j])" for n, f in pairs)
    fields["accumulate_jvp"] = "\n".join(
        f"{' ' * 24}part_k[c, k, {n}, mu, nu] += wi * (d{f}[mu] * {f}[nu] + {f}[mu] * d{f}[nu])"
        for n, f in pairs)
    return fields


def _numpy_fields(lowered, printer) -> dict:
    """The NumPy drivers' shallower copies of the tangent blocks and reductions."""
    return {
        "np_tangent_features_8": printer.body(lowered.tangent_features, 8),
        "np_tangent_step_8": printer.body(lowered.tangent_step, 8),
        "np_accumulate_jvp": "\n".join(
            f"        cross = (weights[:, None] * d{f}[:, :n_train]).T @ {f}[:, :n_train]\n"
            f"        dK[k, {n}] = cross + cross.T" for n, (_, f) in enumerate(lowered.kernels)),
    }


def emit(lowered, backend: str = "numba", version: str | None = None) -> str:
    """Python source of the solver module for ``lowered`` on ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    from .. import __version__
    numba = backend == "numba"
    printer = NumbaPrinter() if numba else NumPyPrinter()
    acc = _accumulate_numba if numba else _accumulate_numpy
    phi, dphi, ddphi = lowered.derivatives
    body = (lambda block, indent_numba, indent_numpy:   # noqa: E731
            printer.body(block, indent_numba if numba else indent_numpy))
    fields = dict(
        version=version or __version__, backend=backend, title=lowered.title,
        phi=phi, dphi=dphi, ddphi=ddphi, fingerprint=lowered.fingerprint(),
        kernel_names=repr(tuple(name for name, _ in lowered.kernels)),
        n_kernels=len(lowered.kernels),
        features=body(lowered.features, 12, 8),
        features_site=body(lowered.features, 12, 4),
        step=body(lowered.step, 12, 8),
        tangent_features=body(lowered.tangent_features, 16, 12),
        tangent_step=body(lowered.tangent_step, 16, 12),
        second_features=body(lowered.second_features, 16, 12),
        second_step=body(lowered.second_step, 16, 12),
        accumulate=acc(lowered.kernels, 20 if numba else 8, False),
        accumulate_tangent=acc(lowered.kernels, 24 if numba else 12, True),
        accumulate_second=_accumulate_second(lowered.kernels, numba),
    )
    fields.update(_activation_fields(lowered, printer, numba))
    fields.update(_numba_fields(lowered) if numba else _numpy_fields(lowered, printer))
    return Template(getattr(templates, backend.upper())).substitute(fields)
