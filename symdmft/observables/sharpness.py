"""Sharpness ``lambda_max(K(t))`` and the edge-of-stability diagnostics (issue 6, THEORY.md §1).

With the NTK K of THEORY.md §1 (learning-rate factor included) one GD step on the squared loss
moves the error by ``Delta -> (I - eta K) Delta`` to first order, so the step is linearly stable
while ``lambda_max(K) < 2 / eta``. Progressive sharpening drives lambda_max up towards 2/eta;
at the edge of stability it hovers there; a catapult overshoots and then settles below.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["sharpness", "stability_report", "StabilityReport"]


def sharpness(K) -> np.ndarray:
    """Largest eigenvalue of the symmetric kernels ``K`` over the last two axes.

    Works on a theory NTK (steps+1, P, P) -> (steps+1,) and on an ensemble (E, steps+1, P, P)
    -> (E, steps+1). K is symmetrised first (rounding asymmetry only).
    """
    K = np.asarray(K, dtype=float)
    if K.ndim < 2 or K.shape[-1] != K.shape[-2]:
        raise ValueError(f"sharpness needs square matrices on the last two axes, got shape {K.shape}")
    return np.linalg.eigvalsh(0.5 * (K + np.swapaxes(K, -1, -2)))[..., -1]


@dataclass(frozen=True)
class StabilityReport:
    """Summary of a sharpness trajectory against the stability threshold ``2 / eta``.

    threshold: 2/eta. first_unstable_step: first step k with sharpness >= 2/eta (None if
    never). fraction_near_edge: fraction of steps with sharpness >= 0.95 * 2/eta.
    max_sharpness: the largest sharpness along the trajectory.
    """
    eta: float
    threshold: float
    first_unstable_step: int | None
    fraction_near_edge: float
    max_sharpness: float


def stability_report(sharp, eta: float) -> StabilityReport:
    """``StabilityReport`` of one sharpness trajectory ``sharp`` (steps+1,) at step ``eta``."""
    sharp = np.asarray(sharp, dtype=float)
    if sharp.ndim != 1 or sharp.size == 0:
        raise ValueError(f"stability_report needs one non-empty trajectory, got shape {sharp.shape}")
    if not eta > 0:
        raise ValueError(f"eta must be positive, got {eta!r}")
    threshold = 2.0 / eta
    above = np.flatnonzero(sharp >= threshold)
    return StabilityReport(
        eta=float(eta), threshold=threshold,
        first_unstable_step=int(above[0]) if above.size else None,
        fraction_near_edge=float(np.mean(sharp >= 0.95 * threshold)),
        max_sharpness=float(np.max(sharp)))
