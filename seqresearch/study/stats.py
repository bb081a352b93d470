"""Numbers over seeds: summaries that count non-finite seeds, comparisons, strict JSON.

A summary over seeds never drops a seed silently: a seed whose value is NaN or infinite (a
diverged run, a fit with too few points) is counted in `num_nonfinite` and kept, as `null`, in
`per_seed`; the mean and interval are over the finite seeds, and where they cannot be computed
they are `null` with the reason beside them (`ci95_why`, `mean_why`). Strict JSON parsers reject
bare NaN, so every results file goes through `json_ready` before it is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqresearch import workdir as workdir_lib
from seqresearch.analysis import fits


def _finite(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


MIN_EXAMPLES = 500  # evaluation examples behind a reported cell (DESIGN.md §7)
Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def seed_summary(values: Sequence[float], examples: int | None = None) -> dict[str, Any]:
  """The mean over seeds with its 95% interval, the worst and best seed.

  Without `examples` the interval is Student's t over the seeds. With `examples` (the number
  of independent evaluation examples behind each seed's value, for an accuracy in [0, 1]) the
  across-seed and the binomial uncertainty are combined: half-width
  sqrt(h_t² + h_b²), h_t the t half-width over the seeds (0 for one seed), h_b the Wilson
  score half-width (Wilson 1927) of the pooled N = S·n examples,
  z/(1 + z²/N)·sqrt(p(1-p)/N + z²/(4N²)), which stays > 0 at p = 0 or 1 (the plain binomial
  interval would claim certainty there). A conservative sum of the two variances: the spread
  over seeds already holds some binomial noise.

  Args:
    values: one number per seed (NaN or inf allowed: counted, never dropped).
    examples: examples per seed behind each value, or None.

  Returns:
    {'mean', 'ci95' (half-width), 'min', 'max', 'per_seed' (None where not finite),
     'num_seeds', 'num_finite', 'num_nonfinite'}, plus 'mean_why' / 'ci95_why' where those
     are None (no finite seed; one finite seed and no example count), and with `examples`:
     'examples_per_seed', 'ci95_seeds', 'ci95_binomial', 'enough_examples' (n >= 500).
  """
  per_seed = [float(v) if _finite(v) else None for v in values]
  finite = [v for v in per_seed if v is not None]
  out: dict[str, Any] = {"per_seed": per_seed, "num_seeds": len(per_seed),
                         "num_finite": len(finite), "num_nonfinite": len(per_seed) - len(finite)}
  if not finite:
    out.update(mean=None, ci95=None, min=None, max=None,
               mean_why=f"no finite seed among {len(per_seed)}")
    return out
  mean, half = fits.mean_ci(finite)
  half = half if len(finite) > 1 else None
  out.update(mean=mean, ci95=half, min=min(finite), max=max(finite))
  if examples is not None:
    p, pooled = min(max(mean, 0.0), 1.0), len(finite) * examples
    binomial = (Z95 / (1 + Z95 ** 2 / pooled)
                * math.sqrt(p * (1 - p) / pooled + Z95 ** 2 / (4 * pooled ** 2)))
    out.update(examples_per_seed=int(examples), ci95_seeds=half, ci95_binomial=binomial,
               enough_examples=examples >= MIN_EXAMPLES,
               ci95=math.sqrt((half or 0.0) ** 2 + binomial ** 2))
  elif half is None:
    out["ci95_why"] = "one finite seed: no interval"
  return out


def split(summary: dict[str, Any] | None, learnt: float | None) -> bool:
  """Whether the finite seeds of `summary` fall on both sides of the `learnt` threshold.

  Such outcomes are bimodal (some seeds learn the task, others do not): their mean ± interval
  describes no seed, so figures draw them as per-seed points and tables list the seeds.
  """
  if not summary or learnt is None:
    return False
  seeds = [v for v in summary["per_seed"] if v is not None]
  return any(v >= learnt for v in seeds) and any(v < learnt for v in seeds)


def learnt_count(summary: dict[str, Any], learnt: float) -> tuple[int, int]:
  """(seeds at or above `learnt`, seeds): how many seeds learn the task by that criterion."""
  return (sum(v is not None and v >= learnt for v in summary["per_seed"]),
          summary["num_seeds"])


def distance_bins(low: int, high: int, width: int) -> list[tuple[int, int]]:
  """Consecutive bins [low, low + width - 1], ... covering low .. high (the last may be narrower).

  Raises:
    ValueError: width < 1 or high < low.
  """
  if isinstance(width, bool) or not isinstance(width, int) or width < 1:
    raise ValueError(f"bin width {width!r}: must be an integer >= 1.")
  if high < low:
    raise ValueError(f"distances {low} .. {high}: the longest must be >= the shortest.")
  return [(start, min(start + width - 1, high)) for start in range(low, high + 1, width)]


def bin_label(lo: int, hi: int) -> str:
  """'11-20' for a bin of several distances, '11' for one."""
  return str(lo) if lo == hi else f"{lo}-{hi}"


def binned(values_by_distance: Sequence[dict[str, float | None]],
           bins: Sequence[tuple[int, int]]) -> dict[str, list[float | None]]:
  """Per bin, per seed: the mean of the seed's values at the bin's distances.

  Args:
    values_by_distance: per seed, {distance (str): value or None}, e.g. a run's
      `accuracy_by_distance`. Distances are drawn uniformly per example, so each distance of a
      bin holds about as many examples and the plain mean over them is the bin's accuracy.
    bins: (lo, hi) per bin, inclusive.

  Returns:
    {bin_label: [value per seed]}: None for a seed with a non-finite value in the bin (counted,
    never dropped, by `seed_summary`); bins with no distance present are left out.
  """
  out = {}
  for lo, hi in bins:
    keys = [str(d) for d in range(lo, hi + 1)]
    if not any(k in seed for seed in values_by_distance for k in keys):
      continue
    per_seed = []
    for seed in values_by_distance:
      values = [seed[k] for k in keys if k in seed]
      per_seed.append(sum(values) / len(values) if values and all(_finite(v) for v in values)
                      else None)
    out[bin_label(lo, hi)] = per_seed
  return out


def mean_over_seeds(values_SxN: Sequence[Sequence[float]]) -> list[float | None]:
  """Per position, the mean over seeds of the finite values (None where no seed is finite)."""
  v_SxN = np.asarray([[v if _finite(v) else np.nan for v in row] for row in values_SxN],
                     np.float64)
  finite_SxN = np.isfinite(v_SxN)
  count_N = finite_SxN.sum(axis=0)
  total_N = np.where(finite_SxN, v_SxN, 0.0).sum(axis=0)
  return [float(t / c) if c else None for t, c in zip(total_N, count_N)]


def fmt(value: Any, spec: str = ".2f") -> str:
  """A number as the report prints it: 'n/a' for None or a non-finite value."""
  if not _finite(value):
    return "n/a"
  text = format(value, spec)
  # "-0.00": a tiny negative number rounded to zero is printed as zero.
  if text.startswith("-") and not any(c in "123456789" for c in text):
    text = text[1:]
  return text


def pm(summary: dict[str, Any] | None, spec: str = ".2f", learnt: float | None = None) -> str:
  """'0.31 ± 0.04' for a seed summary; '0.31 (1 seed)' without an interval; '–' for none.

  Non-finite seeds are named: '0.31 ± 0.04 (1 of 5 seeds not finite)', and a cell with
  fewer than MIN_EXAMPLES evaluation examples is marked. With `learnt` (the accuracy from
  which a seed counts as having learnt the task), a cell whose seeds fall on both sides of it
  (`split`) lists every seed instead of an interval spanning both modes: 'seeds 1.00 0.50 ...
  (mean 0.80)'.
  """
  if not summary:
    return "–"
  if split(summary, learnt):  # bimodal: the seeds themselves, not an interval between modes
    text = ("seeds " + " ".join(fmt(v, spec) for v in summary["per_seed"]) +
            f" (mean {fmt(summary['mean'], spec)})")
  elif summary["ci95"] is None:
    text = f"{fmt(summary['mean'], spec)} ({summary['num_finite']} finite seed" + \
        ("s)" if summary["num_finite"] != 1 else ")")
  else:
    text = f"{fmt(summary['mean'], spec)} ± {fmt(summary['ci95'], spec)}"
  if summary["num_nonfinite"]:
    text += f" ({summary['num_nonfinite']} of {summary['num_seeds']} seeds not finite)"
  if summary.get("enough_examples") is False:
    text += f" (< {MIN_EXAMPLES} examples)"
  return text


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
  """'higher', 'lower', 'indistinguishable' or 'undecided': seed summary a against b.

  The test: two 95% intervals that do not overlap. With fewer than two finite seeds on either
  side (no spread over seeds is known, whatever the binomial interval says), without an
  interval or without a finite mean the test cannot decide: 'undecided'.
  """
  if (a["mean"] is None or b["mean"] is None or a["ci95"] is None or b["ci95"] is None
      or a["num_finite"] < 2 or b["num_finite"] < 2):
    return "undecided"
  if a["mean"] - a["ci95"] > b["mean"] + b["ci95"]:
    return "higher"
  if a["mean"] + a["ci95"] < b["mean"] - b["ci95"]:
    return "lower"
  return "indistinguishable"


def json_ready(tree: Any) -> Any:
  """`tree` with every non-finite float replaced by None and the reason written beside it.

  A dict value x that is NaN/inf becomes None with '<key>_why': 'not finite (nan)'; a list
  holding such values keeps None in their places and gets '<key>_why' naming the indices.
  """
  if isinstance(tree, dict):
    out: dict[str, Any] = {}
    for key, value in tree.items():
      value = value.item() if isinstance(value, np.generic) else value
      if isinstance(value, float) and not math.isfinite(value):
        out[key] = None
        out.setdefault(f"{key}_why", f"not finite ({value})")
      elif isinstance(value, (list, tuple)) and any(
          isinstance(v, float) and not math.isfinite(v) for v in value):
        bad = [i for i, v in enumerate(value) if isinstance(v, float) and not math.isfinite(v)]
        out[key] = [json_ready(v) for v in value]
        out.setdefault(f"{key}_why", f"entries {bad} not finite")
      else:
        out[key] = json_ready(value)
    return out
  if isinstance(tree, np.generic):
    tree = tree.item()
  if isinstance(tree, (list, tuple)):
    return [json_ready(v) for v in tree]
  if isinstance(tree, float) and not math.isfinite(tree):
    return None
  return tree


def write_results(path: str, results: dict[str, Any]) -> None:
  """Writes `results` atomically as strict JSON (no NaN: see `json_ready`)."""
  workdir_lib.write_json(path, json_ready(results))
