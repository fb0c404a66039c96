"""Where generated modules live and how they are loaded (ARCHITECTURE.md, codegen/).

Built-in activations are emitted into the top-level package ``generated/`` (committed,
installed next to ``symdmft``); anything else into the cache directory
``SYMDMFT_CACHE_DIR`` (default: the user cache dir), under a name keyed by the IR
fingerprint, the generator version and the Python/Numba versions. Every load compares
the file with a fresh emission: a stale or corrupted file is rewritten (atomically), never
trusted. ``SYMDMFT_BACKDOOR=1`` skips that check so a hand-edited module can be debugged.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numba
import platformdirs

from .module import GENERATOR_VERSION, emit

BUILTIN_GENERATED = ("linear", "tanh", "erf", "relu")


def cache_dir() -> Path:
    return Path(os.environ.get("SYMDMFT_CACHE_DIR") or platformdirs.user_cache_dir("symdmft"))


def generated_name(activation: str, backend: str) -> str:
    return f"two_layer_{activation}_{backend}"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _generated_path(activation_name: str, backend: str) -> Path | None:
    """The committed module of a built-in activation, if there is one."""
    if activation_name not in BUILTIN_GENERATED:
        return None
    try:
        package = importlib.import_module("generated")
    except ImportError:
        return None
    return Path(package.__file__).parent / (generated_name(activation_name, backend) + ".py")


def cache_path(lowered, backend: str) -> Path:
    py = "py%d%d" % sys.version_info[:2]
    key = f"{lowered.fingerprint()}_g{GENERATOR_VERSION}_{py}_nb{numba.__version__}"
    return cache_dir() / f"two_layer_{key}_{backend}.py"


_LOADED: dict = {}


def load(lowered, activation_name: str, backend: str = "numba"):
    """Import the solver module for ``lowered``, (re)writing it if missing, stale or corrupt."""
    key = (lowered.fingerprint(), backend)
    if key in _LOADED:
        return _LOADED[key]
    source = emit(lowered, backend)
    trust = os.environ.get("SYMDMFT_BACKDOOR") == "1"
    path = _generated_path(activation_name, backend)
    if path is not None and path.exists() and (trust or path.read_text() == source):
        module = importlib.import_module("generated." + path.stem)
    else:   # not built in, or a stale built-in: never edit the install, use the cache
        path = cache_path(lowered, backend)
        if not (path.exists() and (trust or path.read_text() == source)):
            write_atomic(path, source)
        module = _import_file(path, "symdmft_cache_" + path.stem.replace(".", "_"))
    _LOADED[key] = module
    return module
