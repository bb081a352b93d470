"""The batch every task returns: one pytree, the same fields for every task.

Legend: B batch, T time (sequence length).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Batch:
  """A batch of a synthetic sequence task.

  Attributes:
    inputs: [B, T] int32 token ids fed to the model.
    targets: [B, T] int32 token ids the model must emit at each position.
    weights: [B, T] float32, 1.0 exactly at the *scored* positions (the ones whose target
      depends on an earlier input token); accuracy and accuracy-by-distance use these.
    loss_weights: [B, T] float32, 1.0 where the training loss is taken. For the copy task this
      is every real (unpadded) position, as in the standard formulation whose memoryless
      baseline is L*ln(K)/(T+2L); for agreement it equals `weights`.
    distance: [B, T] int32, at each scored position how many steps back lies the input token
      the target depends on; 0 where not scored.
    attractors: [B] int32 number of attractor nouns per example (agreement), or None.
    regression_targets: [B, T] float32 real-valued targets (the adding problem), or None for
      a classification task. When set, the task is a regression: the model's output channel
      0 (logits[..., 0]) is its prediction, the loss is the squared error, a scored position
      is correct when |error| < REGRESSION_TOLERANCE, and `targets` is all 0.
  """

  inputs: jax.Array
  targets: jax.Array
  weights: jax.Array
  loss_weights: jax.Array
  distance: jax.Array
  attractors: jax.Array | None = None
  regression_targets: jax.Array | None = None


# A regression output counts as correct within this absolute error: the criterion of
# Hochreiter & Schmidhuber (1997, Experiment 4, the adding problem), where a sequence is
# processed correctly when the error at its end is below 0.04.
REGRESSION_TOLERANCE = 0.04


def check_int(name: str, value: object, low: int, allowed: str) -> None:
  """Raises ValueError naming `task.<name>` unless `value` is an integer >= `low`."""
  # bool is an int subclass; True as a count or a delay is a typo, not a setting.
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise ValueError(f"task.{name}={value!r}: must be an integer {allowed}.")


def distinct_indices(key: jax.Array, batch_size: int, population: int, count: int) -> jax.Array:
  """[B, count] int32: per row, `count` distinct indices drawn uniformly from [0, population).

  The order within a row is uniformly random too (the first `count` entries of a random
  permutation). Requires count <= population (checked by the settings' validation).
  """
  noise_BxP = jax.random.uniform(key, (batch_size, population))
  return jnp.argsort(noise_BxP, axis=1)[:, :count].astype(jnp.int32)
