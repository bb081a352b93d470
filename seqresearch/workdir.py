"""The workdir contract: config.json (checked on resume), summary.json, atomic JSON writes.

  <workdir>/config.json     the resolved config
  <workdir>/metrics.jsonl   see metric_writer
  <workdir>/tensorboard/    TensorBoard events
  <workdir>/checkpoints/    orbax steps (see checkpointing)
  <workdir>/summary.json    written once the run has finished
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ml_collections import config_dict

from seqresearch import configlib
from seqresearch import progress

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` atomically: a kill leaves the old file or the new one, never half of one."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for key in sorted(set(old) | set(new)):
      if prefix == "" and key in configlib.PRESENTATION_FIELDS:
        continue  # May change on resume: they alter no number the run produces.
      out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
    return out
  return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} there, {new!r} now"]


def prepare(config: config_dict.ConfigDict, workdir: str, restart: bool) -> None:
  """Creates the workdir, or checks that the one there holds a run of this same config.

  Raises:
    ValueError: the workdir holds a run with another config (and restart is False).
  """
  path = os.path.join(workdir, CONFIG_FILE)
  new = json.loads(config.to_json_best_effort())
  if os.path.exists(path) and restart:
    moved = f"{workdir.rstrip('/')}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    os.rename(workdir, moved)
    progress.note(f"--restart: moved the previous run in {workdir} to {moved}")
  elif os.path.exists(path):
    diffs = _diff(read_json(path), new)
    if diffs:
      raise ValueError(
          f"workdir {workdir} holds a run with a different config ({'; '.join(diffs[:5])}). "
          "Use another --workdir, or pass --restart to move the old run aside and start over.")
  os.makedirs(workdir, exist_ok=True)
  write_json(path, new)


def load_config(workdir: str) -> config_dict.ConfigDict:
  return config_dict.ConfigDict(read_json(os.path.join(workdir, CONFIG_FILE)))
