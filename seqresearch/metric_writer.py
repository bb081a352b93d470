"""Writes metrics to the workdir: `metrics.jsonl` (the contract analyses read) and TensorBoard.

Each JSONL line is one object with `step`, `split` ('train' or 'eval') and `seed` (a run of
`num_seeds` K writes K lines per step, one per seed); values are floats, or {key: float} dicts
such as `accuracy_by_distance`. TensorBoard gets one run per seed: tensorboard/seed_<seed>/. On resume, lines after the restored step
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
    enabled: False makes every call a no-op (processes other than 0 of a multi-process run).
  """

  def __init__(self, workdir: str, resume_step: int | None, enabled: bool = True) -> None:
    self._enabled = enabled
    if not enabled:
      return
    self._path = os.path.join(workdir, METRICS_FILE)
    kept = [m for m in read_metrics(workdir) if resume_step is not None and m["step"] <= resume_step]
    tmp = self._path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(m) + "\n" for m in kept)
    os.replace(tmp, self._path)  # Atomic: a kill here leaves either the old or the new file.
    self._file = open(self._path, "a")
    self._workdir = workdir
    # TensorBoard drops events at or after this step that a died run left behind.
    self._purge = None if resume_step is None else resume_step + 1
    self._tb: dict[int, SummaryWriter] = {}

  def _board(self, seed: int) -> SummaryWriter:
    if seed not in self._tb:
      self._tb[seed] = SummaryWriter(
          logdir=os.path.join(self._workdir, "tensorboard", f"seed_{seed}"),
          purge_step=self._purge)
    return self._tb[seed]

  def write(self, step: int, split: str, metrics: dict[str, Any], seed: int) -> None:
    if not self._enabled:
      return
    line = {"step": step, "split": split, "seed": seed, **metrics}
    self._file.write(json.dumps(line) + "\n")
    self._file.flush()  # A kill loses nothing written before the next checkpoint.
    board = self._board(seed)
    for name, value in metrics.items():
      if isinstance(value, dict):
        for key, v in value.items():
          board.add_scalar(f"{split}/{name}/{key}", v, step)
      else:
        board.add_scalar(f"{split}/{name}", value, step)
    board.flush()

  def close(self) -> None:
    if not self._enabled:
      return
    self._file.close()
    for board in self._tb.values():
      board.close()
