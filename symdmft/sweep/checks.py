"""Checks of the values a sweep spec may hold, one per key (issue 7: validate before running).

Each check takes ``(name, value)``, returns the value normalised (ints for counts, floats for
gamma0 and eta) or raises ``ValueError`` naming ``name``; the spec adds where the key sits
(``base.eta``, ``axes.gamma0[2]``).
"""
from __future__ import annotations

from ..arch.activations import parse_activation
from ..arch.mlp import check_positive
from ..codegen.module import BACKENDS
from ..runtime.samplers import SAMPLERS


def _seed(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _choice(options):
    def check(name, value):
        if value not in options:
            raise ValueError(f"{name} must be one of {options}, got {value!r}")
        return value
    return check


def _activation(name, value):
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string (a built-in name or a SymPy expression in h)")
    try:
        parse_activation(value)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    return value.strip()


def _ensemble(name, value):
    value = check_positive(name, value, integer=True)
    if value < 2:
        raise ValueError(f"{name} must be at least 2 (a variance needs two networks), got {value}")
    return value


def _bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _positive(integer):
    def check(name, value):
        return check_positive(name, value, integer=integer)
    return check


CHECKS = {"activation": _activation, "hidden_layers": _positive(True), "gamma0": _positive(False),
          "center": _bool, "eta": _positive(False), "steps": _positive(True), "P": _positive(True),
          "seed": _seed, "samples": _positive(True), "sampler": _choice(SAMPLERS),
          "backend": _choice(BACKENDS), "width": _positive(True), "ensemble": _ensemble,
          "chunk": _positive(True)}


def check_value(label, key, value, P_data):
    """``CHECKS[key]`` on ``value``, errors prefixed with ``label``; P at most the data's P."""
    try:
        value = CHECKS[key](key, value)
    except ValueError as err:
        raise ValueError(f"sweep spec: {label}: {err}") from None
    if key == "P" and value > P_data:
        raise ValueError(f"sweep spec: {label}: P = {value} exceeds the {P_data} training points of the data")
    return value


def check_keys(prefix, table, known):
    """Raise ``ValueError`` for the first key of ``table`` not in ``known``."""
    for key in table:
        if key not in known:
            raise ValueError(f"sweep spec: unknown key {prefix}{key} (known: {', '.join(known)})")
