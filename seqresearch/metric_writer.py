"""Writes metrics to the workdir: `metrics.jsonl` (the contract analyses read) and TensorBoard.

Each JSONL line is one object with `step` and `split` ('train' or 'eval'); values are floats,
or {key: float} dicts such as `accuracy_by_distance`. On resume, lines after the restored step
are dropped, so a resumed run's file equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class MetricWriter:
  """Appends metrics lines and TensorBoard scalars.

  Args:
    workdir: the run directory.
    resume_step: the step of the restored checkpoint; lines with a larger step are removed
      (they were written after that checkpoint by a run that died). None: a fresh run, the
      file is started anew.
  """

  def __init__(self, workdir: str, resume_step: int | None) -> None:
    self._path = os.path.join(workdir, METRICS_FILE)
    kept = [m for m in read_metrics(workdir) if resume_step is not None and m["step"] <= resume_step]
    tmp = self._path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(m) + "\n" for m in kept)
    os.replace(tmp, self._path)  # Atomic: a kill here leaves either the old or the new file.
    self._file = open(self._path, "a")
    purge = None if resume_step is None else resume_step + 1
    self._tb = SummaryWriter(logdir=os.path.join(workdir, "tensorboard"), purge_step=purge)

  def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
    self._file.write(json.dumps({"step": step, "split": split, **metrics}) + "\n")
    self._file.flush()  # A kill loses nothing written before the next checkpoint.
    for name, value in metrics.items():
      if isinstance(value, dict):
        for key, v in value.items():
          self._tb.add_scalar(f"{split}/{name}/{key}", v, step)
      else:
        self._tb.add_scalar(f"{split}/{name}", value, step)
    self._tb.flush()

  def close(self) -> None:
    self._file.close()
    self._tb.close()
