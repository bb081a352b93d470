"""Checkpoints of the whole train state: atomic, verified, resumable. The only module importing orbax.

Integrity. Each save records a SHA-256 digest of the state's bytes (leaf paths, dtypes, shapes
and values) in the step's orbax metadata, written atomically with the step. `restore` recomputes
it and refuses a step whose digest differs (a flipped bit on disk restores without error in
orbax, with other numbers). `restore_latest` walks back from the newest step to the newest one
that restores and verifies, and names both steps; a writer moves the damaged newer steps aside to
`<directory>.damaged/` (nothing is deleted) so that training can save those steps again. Steps
written before digests existed restore unverified, with a note.

Retention keeps the newest `keep` steps plus the `keep_best` best by evaluation accuracy. The
evaluation metrics are written into each step (orbax's `metrics` item) so that the ranking
survives a restart: orbax writes that item only when `best_fn` is set, and `best_fn` together
with `max_to_keep` evicts the newest steps, so we give `best_fn` (for the metrics item) and a
`preservation_policy` (for retention; it takes precedence over `best_fn`).

A full disk raises `workdir.DiskFullError`: one line with the path and the space needed.
"""

from __future__ import annotations

import hashlib
import json
import logging as std_logging
import os
import shutil
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from seqresearch import progress
from seqresearch import workdir as workdir_lib

BEST_METRIC = "accuracy"  # Evaluation metric ranking the kept-best checkpoints (higher is better).
DIGEST_KEY = "state_sha256"  # Key of the digest in a step's orbax custom metadata.
CONFIG_KEY = "config"  # Key of the run's config JSON there (config.json can be replaced).
DAMAGED_SUFFIX = ".damaged"  # Damaged steps are moved to <checkpoints directory> + this.


class DamagedCheckpointError(RuntimeError):
  """No checkpoint of a run restores intact (each step's reason is in the message)."""


class _QuietOrbax(std_logging.Filter):
  """Drops two orbax warnings that our use of it makes on every save and metadata read: a save
  without evaluation metrics (expected between evaluations) and an unrestored item while
  reading step metadata."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ("did not provide metrics" in message or "could not be restored" in message)


std_logging.getLogger("absl").addFilter(_QuietOrbax())


def _leaf_bytes(x: Any) -> np.ndarray:
  """A leaf as host numpy bytes (a replica of a replicated array in multi-process runs)."""
  if isinstance(x, jax.Array):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    if not x.is_fully_addressable:
      if not x.sharding.is_fully_replicated:
        raise ValueError("sharded leaf")  # Not hashable on one process; see state_digest.
      x = x.addressable_shards[0].data
  return np.ascontiguousarray(np.asarray(x))


def state_digest(state: Any) -> str | None:
  """SHA-256 (hex) of a state pytree: every leaf's path, dtype, shape and bytes, in tree order.

  Returns None for a state with a leaf sharded across processes (no process sees all of it).
  """
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    try:
      array = _leaf_bytes(leaf)
    except ValueError:
      return None
    digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _nbytes(state: Any) -> int:
  return int(sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(state)))


def _first_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _unreadable_metadata(directory: str) -> dict[int, str]:
  """Steps whose orbax metadata or metrics file is not JSON: orbax would list such a step
  without its digest (so unverified) or fail to open the directory at all."""
  out = {}
  if not os.path.isdir(directory):
    return out
  for name in sorted(n for n in os.listdir(directory) if n.isdigit()):
    for part in ("_CHECKPOINT_METADATA", os.path.join("metrics", "metrics")):
      path = os.path.join(directory, name, part)
      if os.path.exists(path):
        try:
          with open(path) as f:
            json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
          out[int(name)] = f"{part} is not JSON ({_first_line(e)})"
          break
  return out


class Checkpoints:
  """A thin wrapper over `ocp.CheckpointManager` with loud failures instead of silent ones.

  Args:
    directory: the run's checkpoints directory (created if missing).
    keep: how many of the newest steps to keep.
    keep_best: how many more to keep, the best by evaluation `BEST_METRIC` (0: none).
    writer: the run's writer (it may move damaged steps aside); a reader refuses them.

  Raises:
    DamagedCheckpointError: (reader) a step's metadata is damaged so orbax cannot list it.
  """

  def __init__(self, directory: str, *, keep: int, keep_best: int,
               writer: bool = False) -> None:
    self.directory = os.path.abspath(directory)
    self._writer = writer
    damaged = _unreadable_metadata(self.directory)
    if damaged and writer:
      for step, why in damaged.items():
        progress.note(f"WARNING: checkpoint step {step} in {self.directory} is damaged ({why}).")
      self._set_aside(damaged)
    elif damaged:  # orbax cannot even list the steps with such a file.
      raise DamagedCheckpointError(
          f"checkpoints in {self.directory} are damaged: "
          f"{'; '.join(f'step {s}: {why}' for s, why in damaged.items())}. Move those step "
          "directories aside (a resumed run does so itself).")
    keep_policies: list[Any] = [policies.LatestN(n=keep)]
    if keep_best:
      keep_policies.append(policies.BestN(
          get_metric_fn=lambda metrics: metrics[BEST_METRIC], n=keep_best,
          keep_checkpoints_without_metrics=False))
    self._options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep_policies),
        best_fn=lambda metrics: metrics[BEST_METRIC], best_mode="max", create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=self._options)
    self._pending_bytes = 0  # Size of the save in flight (for a disk-full message).

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, metrics: dict[str, float] | None = None,
           config: dict[str, Any] | None = None) -> None:
    """Starts an asynchronous save of `state` at `step` (call `wait` before relying on it).

    Args:
      step: the train step the state is at.
      state: the train state pytree.
      metrics: evaluation metrics of this step ({BEST_METRIC: float}), None when the step
        was not evaluated; stored with the step so keep-best ranks it after a restart.
      config: the run's config as JSON, stored with the step (see `recorded_config`).

    Raises:
      RuntimeError: `step` is not newer than the newest step in the directory.
      workdir.DiskFullError: no space left for this save or the previous one.
    """
    digest = state_digest(state)
    with workdir_lib.disk_full_reported(self.directory, self._pending_bytes):
      self._manager.wait_until_finished()  # Surfaces a failure of the previous save here.
    self._pending_bytes = _nbytes(state)
    with workdir_lib.disk_full_reported(self.directory, self._pending_bytes):
      saved = self._manager.save(
          step, args=ocp.args.StandardSave(state), metrics=metrics, force=True,
          custom_metadata={DIGEST_KEY: digest, CONFIG_KEY: config})
    if not saved:  # orbax refuses steps <= the latest one without raising.
      raise RuntimeError(
          f"checkpoint at step {step} was not written: the directory {self.directory} already "
          f"holds step {self.latest_step()}. Start a new workdir or pass restart=True.")

  def _recorded_digest(self, step: int) -> str | None:
    custom = self._manager.metadata(step).custom_metadata or {}
    return custom.get(DIGEST_KEY)

  def recorded_config(self, step: int) -> dict[str, Any] | None:
    """The config JSON the run had when it saved `step` (None for steps saved without)."""
    custom = self._manager.metadata(step).custom_metadata or {}
    return custom.get(CONFIG_KEY)

  def restore(self, step: int, target: Any) -> Any:
    """Restores `step` into the structure, dtypes and shardings of `target` (arrays or
    `jax.ShapeDtypeStruct`s) and checks it against the digest recorded at save.

    Raises:
      DamagedCheckpointError: the restored bytes differ from what was saved.
      Exception: whatever orbax raises for a step it cannot read.
    """
    abstract = jax.tree.map(
        lambda x: x if isinstance(x, jax.ShapeDtypeStruct)
        else jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        target)
    recorded = self._recorded_digest(step)
    state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    if recorded is None:
      progress.note(f"checkpoint step {step} in {self.directory} has no recorded digest "
                    "(written before digests existed): restored unverified.")
    elif state_digest(state) != recorded:
      raise DamagedCheckpointError(
          f"checkpoint step {step} in {self.directory} is damaged: its contents differ from "
          "the digest recorded when it was saved")
    return state

  def restore_latest(self, target: Any) -> tuple[int | None, Any]:
    """Restores the newest step that reads back intact. A writer moves the damaged newer
    steps to `<directory>.damaged/`, so that it can save those steps again.

    Args:
      target: as in `restore`.

    Returns:
      (step, state), or (None, target) when the directory holds no step.

    Raises:
      DamagedCheckpointError: steps exist but none restores intact; names each step's reason.
    """
    steps = self.all_steps()
    failures: list[tuple[int, str]] = []
    for step in reversed(steps):
      try:
        state = self.restore(step, target)
      except DamagedCheckpointError as e:
        failures.append((step, "contents differ from the digest recorded at save"))
        del e
        continue
      except Exception as e:  # pylint: disable=broad-except  (any unreadable step: fall back)
        failures.append((step, _first_line(e)))
        continue
      if failures:
        damaged = ", ".join(f"step {s} ({why})" for s, why in failures)
        progress.note(f"WARNING: newest checkpoint(s) in {self.directory} unreadable: {damaged}. "
                      f"Falling back to step {step}, the newest intact one.")
        if self._writer:
          self._set_aside([s for s, _ in failures])
      return step, state
    if failures:
      reasons = "; ".join(f"step {s}: {why}" for s, why in failures)
      raise DamagedCheckpointError(
          f"no checkpoint in {self.directory} restores intact ({reasons}). Move the "
          "directory aside to start the run over (or pass --restart).")
    return None, target

  def _set_aside(self, steps: Any) -> None:
    manager = getattr(self, "_manager", None)
    if manager is not None:
      manager.wait_until_finished()
    aside = self.directory + DAMAGED_SUFFIX
    os.makedirs(aside, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for step in steps:
      source = os.path.join(self.directory, str(step))
      if os.path.exists(source):
        moved = os.path.join(aside, f"{step}-{stamp}")
        shutil.move(source, moved)
        progress.note(f"moved damaged checkpoint step {step} to {moved}")
    if manager is not None:
      manager.reload()

  def best_step(self) -> int | None:
    """The kept step with the highest evaluation `BEST_METRIC` (None if none was evaluated)."""
    return self._manager.best_step()

  def metrics(self, step: int) -> dict[str, float] | None:
    """The evaluation metrics stored with `step` (None if it was saved without)."""
    return self._manager.metrics(step)

  def wait(self) -> None:
    """Blocks until the save in flight is on disk.

    Raises:
      workdir.DiskFullError: it ran out of space.
    """
    with workdir_lib.disk_full_reported(self.directory, self._pending_bytes):
      self._manager.wait_until_finished()

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self._manager.close()
