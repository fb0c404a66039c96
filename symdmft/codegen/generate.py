"""``symdmft generate``: (re)write the committed modules of the built-in activations and the
deep linear layer map's tangent and adjoint (``deep.linear_program``).

Generation is deterministic, so ``generate_builtin(check=True)`` doubles as the staleness
test: it reports the files whose committed text differs from a fresh emission.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ..arch.mlp import mlp
from ..lower import lower
from ..model.site import TwoLayerSite
from .cache import BUILTIN_GENERATED, generated_name, write_atomic
from .module import BACKENDS, emit


def generated_dir() -> Path:
    return Path(importlib.import_module("generated").__file__).parent


def generate_builtin(check: bool = False, directory: Path | None = None) -> list[tuple[Path, bool]]:
    """Emit every built-in module; returns (path, was_stale). With ``check`` nothing is written."""
    directory = Path(directory) if directory else generated_dir()
    report = []
    for activation in BUILTIN_GENERATED:
        lowered = lower(TwoLayerSite(mlp(activation=activation)))
        for backend in BACKENDS:
            path = directory / (generated_name(activation, backend) + ".py")
            report.append(_refresh(path, emit(lowered, backend), check))
    from ..deep.linear_program import emit as emit_deep_linear     # the deep linear layer map
    report.append(_refresh(directory / "deep_linear_layer.py", emit_deep_linear(), check))
    return report


def _refresh(path: Path, source: str, check: bool) -> tuple[Path, bool]:
    """(path, was_stale); a stale file is rewritten atomically unless ``check``."""
    stale = not path.exists() or path.read_text() != source
    if stale and not check:
        write_atomic(path, source)
    return path, stale
