"""The workdir contract: config.json (checked on resume), its lock, summary.json, atomic writes.

  <workdir>/config.json          the resolved config (the latest, if fields changed on resume)
  <workdir>/config_changes.json  fields changed on resume: [{step, field, before, after}]
  <workdir>/writer.lock          held (fcntl) by the process training in it; holds its PID
  <workdir>/wall_time.json       seconds spent training, summed over every process that did
  <workdir>/metrics.jsonl        see metric_writer
  <workdir>/tensorboard/         TensorBoard events
  <workdir>/checkpoints/         orbax steps (see checkpointing)
  <workdir>/summary.json         written once the run has finished
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import time
from typing import Any, Iterator

from ml_collections import config_dict

from seqresearch import configlib
from seqresearch import progress

CONFIG_FILE = "config.json"
CHANGES_FILE = "config_changes.json"
LOCK_FILE = "writer.lock"
SUMMARY_FILE = "summary.json"
WALL_TIME_FILE = "wall_time.json"

# Fields that may change when a run resumes (besides configlib.PRESENTATION_FIELDS): the advice
# after a NaN (lower the learning rate, clip), how often to evaluate and save, and how long to
# train. Each change is recorded in config_changes.json with the step it took effect at.
RESUMABLE_FIELDS = ("optimizer.learning_rate", "optimizer.grad_clip_norm", "eval_every_steps",
                    "checkpoint_every_steps", "log_every_steps", "num_train_steps",
                    "keep_checkpoints", "keep_best_checkpoints")


class DiskFullError(OSError):
  """A write failed for lack of space; the message names the path and the space needed."""


class WorkdirInUseError(RuntimeError):
  """Another live process holds the workdir's writer lock."""


def _disk_full(error: BaseException) -> bool:
  """True if `error` or anything in its cause/context chain is ENOSPC."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return True
    if "No space left on device" in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def _size(n: float) -> str:
  for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
    if n >= scale:
      return f"{n / scale:.1f} {unit}"
  return f"{int(n)} bytes"


@contextlib.contextmanager
def disk_full_reported(path: str, needed_bytes: int = 0) -> Iterator[None]:
  """Turns a write's ENOSPC (however deeply wrapped) into one DiskFullError line.

  Args:
    path: the file or directory being written.
    needed_bytes: about how much the write needs (0: unknown).
  """
  try:
    yield
  except DiskFullError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (re-raised unless it is ENOSPC)
    if not _disk_full(e):
      raise
    probe = path if os.path.isdir(path) else os.path.dirname(path) or "."
    try:
      free = _size(shutil.disk_usage(probe).free)
    except OSError:
      free = "unknown"
    need = f"about {_size(needed_bytes)}" if needed_bytes else "more space"
    raise DiskFullError(
        errno.ENOSPC,
        f"disk full writing {path}: it needs {need}, {free} free there. Free some space (or "
        "use another --workdir) and rerun the same command: it resumes from the last "
        "checkpoint, which is intact.") from None


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` atomically: a kill leaves the old file or the new one, never half of one."""
  tmp = path + ".tmp"
  text = json.dumps(obj, indent=2, sort_keys=True)
  with disk_full_reported(path, len(text)):
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, path)


def read_json(path: str) -> Any:
  """Reads a JSON file; a damaged one raises ValueError naming the file and the position."""
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: "
                       f"{e.msg}); the file is damaged.") from None


class WriterLock:
  """An exclusive `fcntl.flock` on <workdir>/writer.lock, held while a process trains there.

  The kernel drops the lock when its holder exits, however it exits, so a killed run never
  blocks the next one. (flock is per host on some network filesystems.)

  Raises:
    WorkdirInUseError: a live process holds it; the message gives its PID and host.
  """

  def __init__(self, workdir: str) -> None:
    self.path = os.path.join(workdir, LOCK_FILE)
    self._file = open(self.path, "a+")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip() or "another process"
      self._file.close()
      raise WorkdirInUseError(
          f"workdir {workdir} is in use: {holder} holds its lock ({self.path}). Wait for that "
          "run to finish or stop it, or use another --workdir.") from None
    self._file.seek(0)
    self._file.truncate()
    self._file.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    self._file.flush()

  def release(self) -> None:
    if not self._file.closed:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()

  def __enter__(self) -> "WriterLock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    return out
  return {prefix.rstrip("."): tree}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[dict[str, Any]],
                                                                      list[str]]:
  """Splits the differences of two config JSONs into allowed changes and refused ones.

  Returns:
    (changes, refusals): changes as {field, before, after} (fields in RESUMABLE_FIELDS or
    configlib.PRESENTATION_FIELDS); refusals as 'field: X there, Y now' lines.
  """
  before, after = _flatten(old), _flatten(new)
  changes, refusals = [], []
  for field in sorted(set(before) | set(after)):
    if (field not in before or field not in after) and field in configlib.PRESENTATION_FIELDS:
      continue  # e.g. host_allocator, absent from runs saved before it existed.
    if before.get(field) == after.get(field):
      continue
    line = f"{field}: {before.get(field)!r} there, {after.get(field)!r} now"
    if field == "optimizer.grad_clip_norm" and (before.get(field) == 0) != (after.get(field) == 0):
      refusals.append(line + " (clipping can change on resume, not turn on or off: the "
                      "optimizer state's structure depends on it)")
    elif field in RESUMABLE_FIELDS or field in configlib.PRESENTATION_FIELDS:
      changes.append({"field": field, "before": before.get(field), "after": after.get(field)})
    else:
      refusals.append(line)
  return changes, refusals


def _holds_a_run(workdir: str) -> bool:
  checkpoints = os.path.join(workdir, "checkpoints")
  return os.path.isdir(checkpoints) and any(n.isdigit() for n in os.listdir(checkpoints))


def prepare(config: config_dict.ConfigDict, workdir: str,
            restart: bool) -> tuple[WriterLock, list[dict[str, Any]]]:
  """Creates and locks the workdir, or checks that the one there holds a run of this config.

  Returns:
    (lock, changes): the held writer lock (release it when the run ends) and the allowed
    field changes against the recorded config; pass them to `record_changes` once the
    resumed step is known (config.json is rewritten then).

  Raises:
    ValueError: the workdir holds a run with another config, or checkpoints without the
      config.json that says what wrote them (and restart is False).
    WorkdirInUseError: another live process trains in it.
  """
  os.makedirs(workdir, exist_ok=True)
  lock = WriterLock(workdir)
  path = os.path.join(workdir, CONFIG_FILE)
  new = json.loads(config.to_json_best_effort())
  changes: list[dict[str, Any]] = []
  try:
    if restart and (os.path.exists(path) or _holds_a_run(workdir)):
      moved = f"{workdir.rstrip('/')}.old-{time.strftime('%Y%m%d-%H%M%S')}"
      os.rename(workdir, moved)  # Still holding the old lock: nobody starts in it meanwhile.
      progress.note(f"--restart: moved the previous run in {workdir} to {moved}")
      os.makedirs(workdir)
      old_lock, lock = lock, WriterLock(workdir)
      old_lock.release()
    elif os.path.exists(path):
      changes, refusals = config_changes(read_json(path), new)
      if refusals:
        raise ValueError(
            f"workdir {workdir} holds a run with a different config ({'; '.join(refusals[:5])})."
            f" Fields that may change on resume: {', '.join(RESUMABLE_FIELDS)}. Use another "
            "--workdir, or pass --restart to move the old run aside and start over.")
    elif _holds_a_run(workdir):
      raise ValueError(
          f"workdir {workdir} holds checkpoints but no {CONFIG_FILE}: the config that wrote "
          f"them is unknown, so they are not resumed. Restore {path}, use another --workdir, "
          "or pass --restart to move them aside and start over.")
    if not changes:
      write_json(path, new)
  except BaseException:
    lock.release()
    raise
  return lock, changes


def record_changes(config: config_dict.ConfigDict, workdir: str, step: int,
                   changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """Appends `changes` (from `prepare`) at `step` to config_changes.json, then writes the new
  config.json. Returns every change recorded so far."""
  path = os.path.join(workdir, CHANGES_FILE)
  recorded = read_json(path) if os.path.exists(path) else []
  for change in changes:
    entry = {"step": step, **change}
    if entry not in recorded:  # A kill between the two writes below repeats the same entry.
      recorded.append(entry)
      progress.note(f"{change['field']} changed on resume at step {step}: "
                    f"{change['before']!r} -> {change['after']!r} (recorded in {path}).")
  if changes:
    write_json(path, recorded)
    write_json(os.path.join(workdir, CONFIG_FILE), json.loads(config.to_json_best_effort()))
  return recorded


class WallClock:
  """Seconds spent training a run, summed over every process that trained it.

  Each process adds its own time to what wall_time.json held when it started; `save` is called
  at log and checkpoint steps, so a killed process loses at most one interval of its time.
  """

  def __init__(self, workdir: str) -> None:
    self._path = os.path.join(workdir, WALL_TIME_FILE)
    self._before = (float(read_json(self._path)["wall_time_sec"])
                    if os.path.exists(self._path) else 0.0)
    self._started = time.time()

  def total(self) -> float:
    return self._before + time.time() - self._started

  def save(self) -> float:
    total = self.total()
    write_json(self._path, {"wall_time_sec": total})
    return total


def load_config(workdir: str) -> config_dict.ConfigDict:
  """The run's config.json; run-level fields added after the run was made get their defaults."""
  saved = read_json(os.path.join(workdir, CONFIG_FILE))
  defaults = json.loads(configlib.base_config().to_json_best_effort())
  return config_dict.ConfigDict({**{k: v for k, v in defaults.items() if k not in saved}, **saved})
