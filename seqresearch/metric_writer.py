"""Writes metrics to the workdir: `metrics.jsonl` (the contract analyses read) and TensorBoard.

Each JSONL line is one object with `step`, `split` ('train' or 'eval') and `seed` (a run of
`num_seeds` S writes S lines per step, one per seed); values are floats, or {key: float} dicts
such as `accuracy_by_distance`. TensorBoard gets one run per seed: tensorboard/seed_<seed>/.
On resume, lines after the restored step are dropped, so a resumed run's file equals an
uninterrupted run's; a torn last line (a kill in the middle of a write) is dropped with a note,
any other damaged line is refused with the file and line number.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tensorboardX import SummaryWriter

from seqresearch import progress
from seqresearch import workdir as workdir_lib

METRICS_FILE = "metrics.jsonl"


class MetricsFileError(ValueError):
  """metrics.jsonl is damaged other than by a torn last line; names the file and the line."""


def _parse(path: str) -> tuple[list[dict[str, Any]], bool]:
  """The lines of a metrics file, and whether a torn last line was dropped.

  A line written by `MetricWriter.write` ends with a newline; a kill in the middle of a write
  leaves a last line without one. Such a line is dropped if it does not parse. Any other line
  that is not a JSON object with an integer `step` and a `split` is damage: refused.
  """
  if not os.path.exists(path):
    return [], False
  with open(path) as f:
    text = f.read()
  lines = text.split("\n")
  torn = lines.pop()  # '' when the file ends with a newline, as every complete write does.
  out = []
  for number, line in enumerate(lines, start=1):
    if line.strip():
      out.append(_parse_line(path, number, line))
  if torn.strip():
    try:
      out.append(_parse_line(path, len(lines) + 1, torn))
    except MetricsFileError:
      return out, True
  return out, False


def _parse_line(path: str, number: int, line: str) -> dict[str, Any]:
  try:
    value = json.loads(line)
  except json.JSONDecodeError as e:
    raise MetricsFileError(f"{path}, line {number}: not JSON ({e.msg} at column {e.colno}); "
                           "the file is damaged: repair or delete that line.") from None
  if (not isinstance(value, dict) or not isinstance(value.get("step"), int)
      or "split" not in value):
    raise MetricsFileError(f"{path}, line {number}: not a metrics line (a JSON object with an "
                           "integer 'step' and a 'split'); repair or delete that line.")
  return value


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """Every metrics line of a run, in file order (a torn last line, which a killed or still
  running writer leaves, is left out).

  Raises:
    MetricsFileError: any other damaged line, named by file and line number.
  """
  return _parse(os.path.join(workdir, METRICS_FILE))[0]


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
    lines, torn = _parse(self._path) if resume_step is not None else ([], False)
    if torn:
      progress.note(f"{self._path}: dropped its torn last line (a write cut off by a kill).")
    kept = [m for m in lines if m["step"] <= resume_step]
    tmp = self._path + ".tmp"
    with workdir_lib.disk_full_reported(self._path):
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
    line = json.dumps({"step": step, "split": split, "seed": seed, **metrics}) + "\n"
    with workdir_lib.disk_full_reported(self._path, len(line)):
      self._file.write(line)
      self._file.flush()  # A kill loses nothing written before the next checkpoint.
    board = self._board(seed)
    for name, value in metrics.items():  # None: a diverged seed's value (no point drawn)
      if isinstance(value, dict):
        for key, v in value.items():
          if v is not None:
            board.add_scalar(f"{split}/{name}/{key}", v, step)
      elif value is not None:
        board.add_scalar(f"{split}/{name}", value, step)
    with workdir_lib.disk_full_reported(os.path.join(self._workdir, "tensorboard")):
      board.flush()

  def close(self) -> None:
    if not self._enabled:
      return
    with workdir_lib.disk_full_reported(self._path):
      self._file.close()
      for board in self._tb.values():
        board.close()
