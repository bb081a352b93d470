"""Loss, accuracy, and accuracy by dependency distance and by attractor count.

Everything is summed on device over a fixed evaluation set (batches from `fold_in(eval_key, i)`,
the same examples at every evaluation) and pulled to the host once per evaluation.

Classification tasks are scored by cross-entropy and argmax. A regression task (the adding
problem) is recognised by its batch: `batch.regression_targets` is set (a static property of
the pytree, so the choice is made once at trace time). Its prediction is the model's output
channel 0 (`logits[..., 0]`; every readout is Linear(H, V), so no model changes), its loss the
squared error, and a scored position is correct when |error| < `tasks.base.REGRESSION_TOLERANCE`.

Legend: B batch, T time, V vocabulary.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from seqresearch import tasks
from seqresearch.tasks.base import REGRESSION_TOLERANCE


def target_nll(logp_BxTxV: jax.Array, targets_BxT: jax.Array) -> jax.Array:
  """-log p(target) at every position, nll_BxT.

  Picked by comparing with the vocabulary, not by `take_along_axis`: the same numbers (the
  other terms are exact zeros), but the gather's gradient is a scatter-add whose XLA:CPU
  compile time grows with T (a recurrent train step: 0.9 s at T=64, 1.6 s at T=4096), while
  this stays flat.
  """
  is_target_BxTxV = targets_BxT[..., None] == jnp.arange(logp_BxTxV.shape[-1])[None, None]
  return -jnp.where(is_target_BxTxV, logp_BxTxV, 0.0).sum(axis=-1)


def is_regression(batch: tasks.Batch) -> bool:
  """Whether the batch is of a regression task (decided at trace time)."""
  return batch.regression_targets is not None


def position_loss_and_hit(logits_BxTxV: jax.Array,
                          batch: tasks.Batch) -> tuple[jax.Array, jax.Array]:
  """Per-position loss and correctness, before any mask.

  Returns:
    loss_BxT: float32, -log p(target) (classification) or the squared error of output
      channel 0 (regression).
    hit_BxT: float32, 1 where the argmax equals the target (classification) or
      |error| < REGRESSION_TOLERANCE (regression).
  """
  if is_regression(batch):
    error_BxT = logits_BxTxV[..., 0].astype(jnp.float32) - batch.regression_targets
    return jnp.square(error_BxT), (jnp.abs(error_BxT) < REGRESSION_TOLERANCE).astype(
        jnp.float32)
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), axis=-1)
  hit_BxT = (jnp.argmax(logits_BxTxV, axis=-1) == batch.targets).astype(jnp.float32)
  return target_nll(logp_BxTxV, batch.targets), hit_BxT


def loss_and_correct(logits_BxTxV: jax.Array,
                     batch: tasks.Batch) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Mean loss over `loss_weights`, correctness at scored positions.

  Returns:
    loss: scalar, sum(loss_BxT * loss_weights) / sum(loss_weights): the mean cross-entropy
      (nats per loss position), or for a regression task the mean squared error.
    correct_BxT: float32, 1 where the position is scored and its prediction right.
    scored: scalar, number of scored positions.
  """
  loss_BxT, hit_BxT = position_loss_and_hit(logits_BxTxV, batch)
  loss = (loss_BxT * batch.loss_weights).sum() / jnp.maximum(batch.loss_weights.sum(), 1.0)
  return loss, hit_BxT * batch.weights, batch.weights.sum()


def batch_sums(logits_BxTxV: jax.Array, batch: tasks.Batch, num_buckets: int) -> dict[str, Any]:
  """Sums (not means) of every evaluation statistic, so batches add up exactly."""
  loss_BxT, hit_BxT = position_loss_and_hit(logits_BxTxV, batch)
  correct_BxT = hit_BxT * batch.weights
  has_scored_B = batch.weights.sum(axis=1) > 0
  # An example is solved when every one of its scored positions is right.
  solved_B = ((correct_BxT == batch.weights).all(axis=1) & has_scored_B).astype(jnp.float32)
  distance = batch.distance.reshape(-1)
  sums = {
      "loss_sum": (loss_BxT * batch.loss_weights).sum(),
      "loss_positions": batch.loss_weights.sum(),
      "correct": correct_BxT.sum(),
      "scored": batch.weights.sum(),
      "solved": solved_B.sum(),
      "examples": has_scored_B.astype(jnp.float32).sum(),
      "correct_by_distance": jax.ops.segment_sum(
          correct_BxT.reshape(-1), distance, num_segments=num_buckets),
      "scored_by_distance": jax.ops.segment_sum(
          batch.weights.reshape(-1), distance, num_segments=num_buckets),
  }
  if is_regression(batch):
    sums["squared_error_by_distance"] = jax.ops.segment_sum(
        (loss_BxT * batch.weights).reshape(-1), distance, num_segments=num_buckets)
  if batch.attractors is not None:
    sums["solved_by_attractors"] = jax.ops.segment_sum(
        solved_B, batch.attractors, num_segments=num_buckets)
    sums["examples_by_attractors"] = jax.ops.segment_sum(
        has_scored_B.astype(jnp.float32), batch.attractors, num_segments=num_buckets)
  return sums


def _ratio_by_key(numerator, denominator) -> dict[str, float]:
  return {str(k): float(n / d) for k, (n, d) in enumerate(zip(numerator, denominator)) if d > 0}


def summarize(sums: dict[str, Any], task: Any) -> dict[str, Any]:
  """Turns host-side sums into the eval line of metrics.jsonl.

  `loss` is the mean cross-entropy, or for a regression task the mean squared error (then
  `mse_by_distance` is added); `task.eval_constants()` (baselines, chance levels) are appended.
  """
  metrics = {
      "loss": float(sums["loss_sum"] / max(sums["loss_positions"], 1.0)),
      "accuracy": float(sums["correct"] / max(sums["scored"], 1.0)),
      "sequence_accuracy": float(sums["solved"] / max(sums["examples"], 1.0)),
      "accuracy_by_distance": _ratio_by_key(sums["correct_by_distance"],
                                            sums["scored_by_distance"]),
  }
  if "squared_error_by_distance" in sums:
    metrics["mse_by_distance"] = _ratio_by_key(sums["squared_error_by_distance"],
                                               sums["scored_by_distance"])
  if "solved_by_attractors" in sums:
    metrics["accuracy_by_attractors"] = _ratio_by_key(sums["solved_by_attractors"],
                                                      sums["examples_by_attractors"])
  metrics.update(task.eval_constants())
  return metrics
