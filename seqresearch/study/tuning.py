"""One learning-rate sweep for every model: the pilot runs, the choice, the chosen-rates file.

DESIGN.md §7: every compared model gets its learning rate from the same small sweep at the same
budget. At a scale that tunes (configs/study.py: a `learning_rate` block with two or more
`rates`), the study first trains the `learning_rate` sweep (every variant at every rate, on one
pilot task, with the budget of that task at that scale), then picks per variant the rate whose
final evaluation is best, writes the choice to `<study>/learning_rates.json`, and every other
sweep of the scale trains each variant at its chosen rate (`configs/study.py` reads the file,
named by the sweep argument `learning_rates=PATH`).

The criterion: the lowest mean final evaluation loss over the seeds. A seed whose loss is not
finite (diverged) counts as an infinite loss, so a rate at which any seed diverges loses to
one at which none does; among equal scores the smaller rate. The loss is continuous where the
accuracy saturates at 1.0 for several rates, and a rate that leaves some seeds at chance
(bimodal outcomes) has a high mean loss.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from seqresearch import workdir as workdir_lib

SWEEP = "learning_rate"  # the sweep of configs/study.py that holds the pilot runs
FILE = "learning_rates.json"  # the choice, in the study directory
CRITERION = ("lowest mean final evaluation loss over seeds (a non-finite seed counts as an "
             "infinite loss; ties: the smaller rate)")


def score(losses: Sequence[float | None]) -> float:
  """The mean loss over seeds, +inf if any seed is not finite (None: a diverged seed)."""
  if not losses or any(x is None or not math.isfinite(x) for x in losses):
    return math.inf
  return sum(losses) / len(losses)


def choose(losses_by_rate: Mapping[float, Sequence[float | None]]) -> float:
  """The chosen rate: the lowest `score` of its seeds' final losses; ties, the smaller rate.

  Args:
    losses_by_rate: {learning rate: final evaluation loss per seed (None where diverged)}.

  Raises:
    ValueError: no rate given.
  """
  if not losses_by_rate:
    raise ValueError("no learning rate to choose from: no pilot run finished.")
  return min(losses_by_rate, key=lambda rate: (score(losses_by_rate[rate]), rate))


def choose_all(losses: Mapping[str, Mapping[float, Sequence[float | None]]]) -> dict[str, Any]:
  """{'rates': {variant: chosen rate}, 'criterion': ..., 'scores': {variant: {rate: score}}}.

  Every variant with at least one finished pilot run gets a rate.
  """
  return {
      "criterion": CRITERION,
      "rates": {variant: choose(by_rate) for variant, by_rate in losses.items() if by_rate},
      "scores": {variant: {repr(rate): score(seeds) for rate, seeds in by_rate.items()}
                 for variant, by_rate in losses.items()},
  }


def path(study_dir: str) -> str:
  """Where the chosen rates of a study directory live."""
  return os.path.join(study_dir, FILE)


def read_rates(file: str) -> dict[str, float]:
  """{variant: learning rate} from a chosen-rates file.

  Raises:
    ValueError: no such file, or it holds no 'rates' mapping of numbers.
  """
  if not os.path.isfile(file):
    raise ValueError(f"learning_rates={file}: no such file (the study writes it after the "
                     f"'{SWEEP}' sweep has trained).")
  data = workdir_lib.read_json(file)
  rates = data.get("rates") if isinstance(data, dict) else None
  if not isinstance(rates, dict) or not all(
      isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
      for v in rates.values()):
    raise ValueError(f"learning_rates={file}: must hold {{'rates': {{variant: rate > 0}}}}.")
  return {k: float(v) for k, v in rates.items()}


def beyond_edge(scores: Mapping[str, Mapping[str, float]],
                rates: Mapping[str, float]) -> dict[str, float]:
  """{variant: the next rate beyond its grid} for each variant that chose an edge of the grid.

  One grid step further on the chosen side, the step being the grid's mean ratio between
  neighbours, snapped to the 1-3-10 ladder of learning-rate grids: the grid 3e-4, 1e-3, 3e-3
  (step sqrt(10)) continues to 1e-2 above and 1e-4 below. A variant with fewer than two rates
  tried, or whose choice lies inside the grid, is left out.

  Args:
    scores: {variant: {repr(rate): score}} as in the chosen-rates file (`choose_all`).
    rates: {variant: chosen rate}.
  """
  out = {}
  for variant, chosen in rates.items():
    grid = sorted(float(r) for r in scores.get(variant, {}))
    if len(grid) < 2 or grid[0] < chosen < grid[-1]:
      continue
    step = (grid[-1] / grid[0]) ** (1 / (len(grid) - 1))
    raw = grid[-1] * step if chosen == grid[-1] else grid[0] / step
    decade = 10.0 ** math.floor(math.log10(raw))
    nearest = min((decade * m for m in (1, 3, 10)), key=lambda c: abs(math.log(c / raw)))
    out[variant] = float(f"{nearest:.1g}")
  return out
