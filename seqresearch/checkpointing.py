"""Checkpoints of the whole train state, atomic and resumable. The only module importing orbax.

Retention keeps the newest `keep` steps plus the `keep_best` best by evaluation accuracy.
(orbax's `best_fn` together with `max_to_keep` evicts the newest steps instead, so we compose
preservation policies.)
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

BEST_METRIC = "accuracy"  # Evaluation metric ranking the kept-best checkpoints (higher is better).


class Checkpoints:
  """A thin wrapper over `ocp.CheckpointManager` with loud failures instead of silent ones."""

  def __init__(self, directory: str, *, keep: int, keep_best: int) -> None:
    keep_policies: list[Any] = [policies.LatestN(n=keep)]
    if keep_best:
      keep_policies.append(policies.BestN(
          get_metric_fn=lambda metrics: metrics[BEST_METRIC], n=keep_best,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep_policies), create=True)
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, metrics: dict[str, float] | None = None) -> None:
    """Starts an asynchronous save of `state` at `step` (call `wait` before relying on it)."""
    saved = self._manager.save(
        step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)
    if not saved:  # orbax refuses steps <= the latest one without raising.
      raise RuntimeError(
          f"checkpoint at step {step} was not written: the directory {self.directory} already "
          f"holds step {self.latest_step()}. Start a new workdir or pass restart=True.")

  def restore(self, step: int, target: Any) -> Any:
    """Restores `step` into the structure, dtypes and shardings of `target` (arrays or
    `jax.ShapeDtypeStruct`s)."""
    abstract = jax.tree.map(
        lambda x: x if isinstance(x, jax.ShapeDtypeStruct)
        else jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        target)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
