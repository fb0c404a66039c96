"""Expected loss at finite width and its bias / variance decomposition (THEORY.md §3).

For the squared loss on a set of points with targets y, at leading order in 1/N,

    E 1/2 |y - f|^2 = 1/2 |y - f_inf|^2 + (1/N) [ 1/2 sum_mu N Var f_mu  -  (y - f_inf) . b ]
                      (infinite width)          (variance part)          (bias part)

with ``b = N (E f - f_inf)`` (``Result.f_bias``). Averaging the predictions of E
independent networks divides only the variance part by E. On training points this is
THEORY's ``1/2|Delta_inf|^2 + (1/N)[1/2 tr Sigma_Delta + Delta_inf . <Delta^(2)>]``.

``empirical_decomposition`` measures the same parts on trained ensembles (``sd.simulate``
output or predictions from any framework) and fits the 1/N coefficients across widths.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LossParts:
    """Loss terms per time for one point set: ``infinite + (variance / E + bias) / N``."""
    t: np.ndarray
    infinite: np.ndarray     # 1/2 |y - f_inf|^2
    variance: np.ndarray     # coefficient of 1/N: 1/2 sum N Var f
    bias: np.ndarray         # coefficient of 1/N: -(y - f_inf) . N (E f - f_inf)

    def expected(self, width: float, ensemble: int = 1) -> np.ndarray:
        """E loss of the average of ``ensemble`` width-``width`` networks, to O(1/N)."""
        return self.infinite + (self.variance / ensemble + self.bias) / width


def loss_decomposition(res, points: str = "train") -> LossParts:
    """Theory's loss parts on ``points`` ('train' or 'test'); needs ``solve(..., bias=True)``."""
    if res.f_bias is None:
        raise ValueError("the bias part needs the mean correction: solve with bias=True")
    P = res.y.shape[0]
    if points == "train":
        sel, y = slice(0, P), res.y
    elif points == "test":
        if res.y_test is None:
            raise ValueError("the test loss needs test targets: Data(..., X_test, y_test)")
        sel, y = slice(P, None), res.y_test
    else:
        raise ValueError(f"points must be 'train' or 'test', got {points!r}")
    resid = y[None, :] - res.f[:, sel]
    return LossParts(res.t, 0.5 * np.sum(resid ** 2, axis=1),
                     0.5 * np.sum(res.f_var[:, sel], axis=1),
                     -np.sum(resid * res.f_bias[:, sel], axis=1))


@dataclass(frozen=True)
class EmpiricalParts:
    """Per width: loss of the mean predictor and N x variance part, with standard errors;
    and the fitted 1/N law ``loss_of_mean = infinite + bias / N``."""
    widths: np.ndarray
    loss_of_mean: np.ndarray      # (width, t) 1/2 |y - E f|^2
    loss_of_mean_se: np.ndarray
    variance: np.ndarray          # (width, t) N * 1/2 sum Var f
    variance_se: np.ndarray
    infinite: np.ndarray          # (t,) fitted intercept
    bias: np.ndarray              # (t,) fitted 1/N coefficient
    bias_se: np.ndarray


def empirical_decomposition(predictions: dict, y: np.ndarray) -> EmpiricalParts:
    """Bias and variance of the loss from ensembles at two or more widths.

    ``predictions``: {width: array (networks, times, points)} on points with targets ``y``.
    The loss of the mean predictor is fitted as ``a + c / N`` by weighted least squares
    over widths (two widths: ``c = (m1 - m2) / (1/N1 - 1/N2)``); standard errors by the
    delta method from the standard error of each ensemble mean.
    """
    widths = np.array(sorted(predictions), dtype=float)
    if widths.size < 2:
        raise ValueError("the 1/N coefficients need ensembles at two or more widths")
    y = np.asarray(y, dtype=float)
    lm, lm_se, var, var_se = [], [], [], []
    for N in widths:
        f = np.asarray(predictions[int(N)], dtype=float)
        E = f.shape[0]
        if E < 2:
            raise ValueError(f"width {int(N)}: a variance needs at least 2 networks")
        mean = f.mean(axis=0)
        resid = y - mean
        se_mean = f.std(axis=0, ddof=1) / np.sqrt(E)
        # 1/2 |y - mean|^2 overestimates 1/2 |y - E f|^2 by 1/2 sum Var f / E: remove it
        lm.append(0.5 * np.sum(resid ** 2 - se_mean ** 2, axis=-1))
        lm_se.append(np.sqrt(np.sum((resid * se_mean) ** 2, axis=-1)))
        half_var = 0.5 * np.sum(f.var(axis=0, ddof=1), axis=-1)
        dev2 = 0.5 * np.sum((f - mean) ** 2, axis=-1)          # per network
        var.append(N * half_var)
        var_se.append(N * dev2.std(axis=0, ddof=1) / np.sqrt(E))
    lm, lm_se = np.array(lm), np.array(lm_se)
    design = np.stack([np.ones_like(widths), 1 / widths], axis=1)
    infinite, bias, bias_se = (np.empty(lm.shape[1]) for _ in range(3))
    for k in range(lm.shape[1]):
        w = 1 / np.maximum(lm_se[:, k], 1e-300) ** 2
        cov = np.linalg.inv(design.T @ (design * w[:, None]))
        coef = cov @ design.T @ (w * lm[:, k])
        infinite[k], bias[k], bias_se[k] = coef[0], coef[1], np.sqrt(cov[1, 1])
    return EmpiricalParts(widths, lm, lm_se, np.array(var), np.array(var_se), infinite, bias, bias_se)
