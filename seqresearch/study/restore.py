"""Restore a trained run (every seed) and evaluate it where it was not trained.

    restored = restore.restore("runs/copy-lstm")                # every seed, latest checkpoint
    restore.evaluate_at_distances(restored, [20, 80, 160])      # {distance: [metrics of seed s]}

Works on any workdir of `train.train_and_evaluate`, single- or multi-seed: the model is rebuilt
from config.json by `train.load_run`. Evaluating "at distance d" means the run's own task with
every dependency at distance d (`task.at_distance(d)`), scored by the runner's own metrics
(`evaluation.batch_sums`, `evaluation.summarize`) on fixed batches shared by every seed and run.

Legend: S seeds, B batch, T time, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import numpy as np
from flax import nnx
from ml_collections import config_dict

from seqresearch import build
from seqresearch import evaluation
from seqresearch import models
from seqresearch import steps
from seqresearch import tasks
from seqresearch import train

PROBE_SEED = 20170612  # key of the evaluation and probe batches (shared by every run)


@dataclasses.dataclass(frozen=True)
class Restored:
  """A run's config and the parameters of all its seeds, at one checkpoint step."""

  workdir: str
  step: int
  config: config_dict.ConfigDict
  settings: build.RunSettings
  graphdef: Any
  constants: Any
  params_S: Any  # the seeds' parameters, leading axis S
  seeds: tuple[int, ...]

  def model(self, seed_index: int = 0) -> nnx.Module:
    """The trained model of seed `seeds[seed_index]`."""
    params = jax.tree.map(lambda x: x[seed_index], self.params_S)
    return nnx.merge(self.graphdef, params, self.constants)

  def initial_model(self, seed_index: int = 0) -> nnx.Module:
    """The same seed's model at initialisation: built from the key its training started from."""
    key = steps.seed_keys(self.config.seed, self.config.num_seeds)["init"][seed_index]
    return models.build_model(self.settings.model, vocab_size=self.settings.vocab_size,
                              rngs=nnx.Rngs(key))

  @property
  def model_name(self) -> str:
    return str(self.config.model.name)


def restore(workdir: str, step: int | None = None) -> Restored:
  """Rebuilds the run in `workdir` from config.json and its checkpoint (None: the latest).

  Cached per process: the experiments of a report restore the same runs several times. A new
  checkpoint changes the checkpoint directory's mtime, which is part of the key.

  Raises:
    FileNotFoundError: `workdir` holds no run (no config.json) or no checkpoint.
  """
  if not os.path.exists(os.path.join(workdir, "config.json")):
    raise FileNotFoundError(f"--workdir={workdir}: no config.json there; expected a run "
                            "directory written by scripts/train.py.")
  checkpoints = os.path.join(workdir, "checkpoints")
  stamp = os.stat(checkpoints).st_mtime_ns if os.path.isdir(checkpoints) else 0
  return _restore(os.path.abspath(workdir), step, stamp)


@functools.lru_cache(maxsize=32)
def _restore(workdir: str, step: int | None, stamp: int) -> Restored:
  del stamp  # only part of the cache key
  config, model, state = train.load_run(workdir, step)
  graphdef, _, constants = nnx.split(model, nnx.Param, ...)
  return Restored(
      workdir=workdir, step=int(np.max(np.asarray(state.step))), config=config,
      settings=build.validate_run(config), graphdef=graphdef, constants=constants,
      params_S=state.params, seeds=tuple(config.seed + s for s in range(config.num_seeds)))


def unreachable(restored: Restored, distance: int) -> str | None:
  """Why the run cannot be evaluated at `distance`, or None if it can."""
  try:
    task = restored.settings.task.at_distance(distance)
  except ValueError as e:
    return str(e)
  max_len = getattr(restored.settings.model, "max_len", None)
  if max_len is not None and task.seq_len > max_len:
    return (f"distance {distance} needs sequences of {task.seq_len} tokens but the model's "
            f"model.max_len is {max_len}; train with a larger model.max_len to evaluate there.")
  return None


def task_at(restored: Restored, distance: int) -> Any:
  """The run's task with every dependency at `distance`.

  Raises:
    ValueError: the run cannot be evaluated there (see `unreachable`).
  """
  reason = unreachable(restored, distance)
  if reason:
    raise ValueError(reason)
  return restored.settings.task.at_distance(distance)


def evaluate_at_distances(restored: Restored, distances: list[int], *,
                          batch_size: int | None = None,
                          num_batches: int | None = None) -> dict[int, list[dict[str, Any]]]:
  """Evaluates every seed on the run's task with all dependencies at each distance.

  Args:
    restored: from `restore`.
    distances: where to evaluate; each must be reachable (see `unreachable`).
    batch_size, num_batches: evaluation set size; default: the run's eval settings.

  Returns:
    {distance: [the eval metrics of seed s]} (accuracy, sequence_accuracy, loss, ...), each
    with 'examples': the number of examples behind it.
  """
  out = {}
  for distance in distances:
    task = task_at(restored, distance)
    batch_size = batch_size or restored.config.eval_batch_size
    num_batches = num_batches or restored.config.num_eval_batches
    batches = probe_batches(task, batch_size, num_batches)
    sums = jax.device_get(_eval_sums(restored.graphdef, restored.constants, restored.params_S,
                                     batches, task.max_distance + 1))
    out[int(distance)] = [
        {**evaluation.summarize(jax.tree.map(lambda x: x[s], sums), task),
         "examples": batch_size * num_batches}
        for s in range(len(restored.seeds))]
  return out


@functools.partial(jax.jit, static_argnums=(0, 4))
def _eval_sums(graphdef, constants, params_S, batches, num_buckets: int):
  """Summed evaluation statistics of every seed (axis 0) over the stacked batches."""
  def one_batch(params, batch):
    logits_BxTxV = nnx.merge(graphdef, params, constants)(batch.inputs)
    return evaluation.batch_sums(logits_BxTxV, batch, num_buckets)

  def one_seed(params):
    per_batch = jax.vmap(one_batch, in_axes=(None, 0))(params, batches)
    return jax.tree.map(lambda x: x.sum(axis=0), per_batch)

  return jax.vmap(one_seed)(params_S)


@functools.lru_cache(maxsize=64)
def probe_batches(task: Any, batch_size: int, num_batches: int) -> tasks.Batch:
  """`num_batches` fixed batches of `task`, stacked on a leading axis (cached per process)."""
  keys = jax.random.split(jax.random.key(PROBE_SEED), num_batches)
  return jax.jit(jax.vmap(lambda key: task.make_batch(key, batch_size)))(keys)


def probe_batch(restored: Restored, distance: int, num_examples: int) -> tasks.Batch:
  """A fixed batch of the run's task with every dependency at `distance`."""
  batches = probe_batches(task_at(restored, distance), num_examples, 1)
  return jax.tree.map(lambda x: x[0], batches)
