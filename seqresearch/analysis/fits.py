"""Small statistics for the study: confidence intervals across seeds, power-law and
exponential fits.

All functions take plain sequences or numpy arrays and return Python floats; they run on the
host, after the numbers have left the device.

Method of the confidence interval: Student's t. With n values, mean m and sample standard
deviation s (ddof=1), the two-sided interval is m ± t_{(1+c)/2, n-1} · s / sqrt(n). The t
quantile comes from `scipy.stats.t.ppf`; scipy is a hard dependency of jax itself, so it is
always installed with seqresearch (the test checks the quantile against printed table values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def t_quantile(probability: float, dof: int) -> float:
  """The `probability` quantile of Student's t with `dof` degrees of freedom (dof >= 1)."""
  if dof < 1:
    raise ValueError(f"dof={dof}: the t distribution needs at least 1 degree of freedom.")
  return float(stats.t.ppf(probability, dof))


def mean_ci(values: Sequence[float] | np.ndarray,
            confidence: float = 0.95) -> tuple[float, float]:
  """Mean and half-width of its two-sided t confidence interval.

  Args:
    values: one number per seed (any shape; it is flattened). Non-finite values are an error:
      a diverged seed must be reported, not averaged away.
    confidence: coverage of the interval, in (0, 1).

  Returns:
    (mean, half_width): the interval is mean ± half_width. half_width is nan for one value
    (no spread can be estimated from a single seed).
  """
  v_N = np.asarray(values, dtype=np.float64).ravel()
  if v_N.size == 0:
    raise ValueError("mean_ci: no values.")
  if not np.all(np.isfinite(v_N)):
    raise ValueError(f"mean_ci: non-finite values {v_N[~np.isfinite(v_N)].tolist()}.")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence={confidence}: must lie in (0, 1).")
  mean = float(v_N.mean())
  if v_N.size == 1:
    return mean, math.nan
  sem = float(v_N.std(ddof=1)) / math.sqrt(v_N.size)
  return mean, t_quantile(0.5 + confidence / 2, v_N.size - 1) * sem


def _line_fit(x_N: np.ndarray, y_N: np.ndarray) -> tuple[float, float]:
  """Least-squares slope and intercept of y = slope * x + intercept."""
  if x_N.size < 2 or np.ptp(x_N) == 0:
    raise ValueError(f"a fit needs at least two distinct x values, got {x_N.tolist()}.")
  slope, intercept = np.polyfit(x_N, y_N, 1)
  return float(slope), float(intercept)


def fit_power_law(xs: Sequence[float] | np.ndarray,
                  ys: Sequence[float] | np.ndarray) -> tuple[float, float]:
  """Fits y = prefactor * x**exponent by least squares on (log x, log y).

  Args:
    xs, ys: positive numbers of equal length (at least two distinct xs).

  Returns:
    (exponent, prefactor).
  """
  x_N = np.asarray(xs, dtype=np.float64).ravel()
  y_N = np.asarray(ys, dtype=np.float64).ravel()
  if x_N.shape != y_N.shape:
    raise ValueError(f"xs has {x_N.size} values, ys {y_N.size}.")
  if np.any(x_N <= 0) or np.any(y_N <= 0):
    raise ValueError("fit_power_law needs positive xs and ys (it fits on logarithms).")
  exponent, log_prefactor = _line_fit(np.log(x_N), np.log(y_N))
  return exponent, math.exp(log_prefactor)


def fit_exponential(xs: Sequence[float] | np.ndarray,
                    ys: Sequence[float] | np.ndarray) -> tuple[float, float]:
  """Fits y = prefactor * exp(rate * x) by least squares on (x, log y).

  Points whose y is not finite and positive (e.g. a gradient that underflowed to 0, or NaN
  where no example reached that distance) are dropped before fitting.

  Args:
    xs, ys: equal-length sequences.

  Returns:
    (rate, prefactor): rate < 0 means decay, and -1/rate is the e-folding length.
  """
  x_N = np.asarray(xs, dtype=np.float64).ravel()
  y_N = np.asarray(ys, dtype=np.float64).ravel()
  if x_N.shape != y_N.shape:
    raise ValueError(f"xs has {x_N.size} values, ys {y_N.size}.")
  keep_N = np.isfinite(y_N) & (y_N > 0) & np.isfinite(x_N)
  rate, log_prefactor = _line_fit(x_N[keep_N], np.log(y_N[keep_N]))
  return rate, math.exp(log_prefactor)
