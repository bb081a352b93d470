"""The study's experiments, one module per research question, in report order.

scripts/report.py hands `modules()` to `seqresearch.study.runner.Study`; an experiment is one
module here (see `seqresearch.study.runner` for what it provides) plus its name in NAMES.
"""

import importlib
from types import ModuleType

# learning_rate first: the control every later comparison rests on (each model's rate).
NAMES = ("learning_rate", "long_range", "extrapolation", "gradient_path", "attention_maps",
         "parallelism", "complexity", "capacity", "anchors")


def modules(names: tuple[str, ...] = NAMES) -> dict[str, ModuleType]:
  """{name: experiments.<name>} for `names` (each must be in NAMES), in report order.

  Raises:
    ValueError: a name that is not an experiment, naming the allowed ones.
  """
  unknown = [n for n in names if n not in NAMES]
  if unknown:
    raise ValueError(f"--experiments: unknown {unknown}; allowed: {', '.join(NAMES)}.")
  return {n: importlib.import_module(f"experiments.{n}") for n in NAMES if n in names}
