"""The adding problem (Hochreiter & Schmidhuber 1997, Exp. 4; the variant of Arjovsky et al.
2016, §4.2, and Le et al. 2015).

A sequence of n numbers in [0, 1], two of them marked: one in the first half, one in the
second. At the last step the model must output the sum of the two marked numbers.

  position  0 .. n/2-1             n/2 .. n-1
  inputs    values, one marked     values, one marked
  targets   (regression) ........................... y = v_p1 + v_p2 at position n-1

Our models read token ids, so a number is quantised to `num_levels` levels: level k is the
value (k + 0.5) / num_levels; token k is that value unmarked, token num_levels + k the same
value marked (vocab_size = 2 * num_levels). The target is the exact sum of the two marked
values, carried in `Batch.regression_targets`; `evaluation` reads the model's output channel
0 at the last position as the prediction (no model change), takes the squared error as the
loss (MSE) and counts |error| < 0.04 as correct (Hochreiter & Schmidhuber's criterion).

Predicting the mean, 1, whatever the input scores MSE = 2 Var(v) = (N^2 - 1) / (6 N^2) with
N levels (1/6 = 0.167 for continuous values): the baseline every eval line reports, like the
copy task's memoryless loss. The distance is n - 1 - p1, the steps back to the first marked
number, from ceil(n/2) to n - 1; `fixed_distance = d` puts p1 at n - 1 - d.

Legend: B batch, T time (sequence length n), N levels.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from seqresearch.tasks.base import (Batch, LongestTrainedDistance, REGRESSION_TOLERANCE,
                                    check_at_least, check_distance, check_fixed_distance,
                                    check_int, distance_range)


@dataclasses.dataclass(frozen=True)
class AddingSettings(LongestTrainedDistance):
  """Settings of the adding problem (frozen, so usable as a static jit argument).

  Attributes:
    length: n, numbers per sequence (>= 2); the answer is due at the last one.
    num_levels: N, quantisation levels of a number in [0, 1] (>= 2).
    fixed_distance: 0 (first marker uniform in the first half, as Arjovsky et al.), or d in
      [ceil(n/2), n - 1]: the first marker exactly d steps before the end. 0 means off, as in
      `optimizer.grad_clip_norm`.

  `max_distance` (n - 1, or fixed_distance) comes from `LongestTrainedDistance`.
  """

  length: int = 50
  num_levels: int = 32
  fixed_distance: int = 0

  def __post_init__(self) -> None:
    check_int("length", self.length, 2, ">= 2 (one number in each half)")
    check_at_least(self, num_levels=2)
    check_fixed_distance(self.fixed_distance, *self._random_distances,
                         "[ceil(task.length / 2), task.length - 1]",
                         "the first marker must lie in the first half of "
                         f"task.length={self.length}")

  @property
  def vocab_size(self) -> int:
    """N unmarked and N marked values."""
    return 2 * self.num_levels

  @property
  def seq_len(self) -> int:
    return self.length

  @property
  def _random_distances(self) -> tuple[int, int]:
    """(ceil(n/2), n - 1): the distances of a first marker anywhere in the first half."""
    return self.length - self.length // 2, self.length - 1

  @property
  def trained_distances(self) -> tuple[int, int]:
    return distance_range(self.fixed_distance, *self._random_distances)

  @property
  def chance_accuracy(self) -> float:
    """P(|1 - y| < 0.04): how often always answering the mean, 1, counts as correct."""
    n = self.num_levels
    # y = (k1 + k2 + 1) / N for levels k1, k2 uniform on 0..N-1.
    hits = sum(1 for k1 in range(n) for k2 in range(n)
               if abs((k1 + k2 + 1) / n - 1.0) < REGRESSION_TOLERANCE)
    return hits / n ** 2

  def at_distance(self, distance: int) -> AddingSettings:
    """These settings with the first marker exactly `distance` steps before the end.

    The length stays unless the distance does not fit its first half: then it becomes
    distance + 1 (longer) or 2 * distance (shorter).

    Raises:
      ValueError: distance < 1.
    """
    check_distance(distance, 1, "adding-problem distances are integers >= 1.")
    length = self.length
    if distance > length - 1:
      length = distance + 1
    elif distance < length - length // 2:
      length = 2 * distance
    return dataclasses.replace(self, length=length, fixed_distance=distance)

  def eval_constants(self) -> dict[str, float]:
    """The MSE of always answering 1 (2 Var(v) = (N^2 - 1) / (6 N^2); 1/6 if continuous)."""
    n = self.num_levels
    return {"memoryless_baseline_loss": (n * n - 1) / (6 * n * n),
            "chance_accuracy": self.chance_accuracy}

  def make_batch(self, key: jax.Array, batch_size: int) -> Batch:
    """Draws a batch of adding-problem examples.

    Pure and jittable with `self` and `batch_size` static (see `tasks.make_batch`).

    Returns:
      Batch with [B, n] fields: weights = loss_weights = 1 exactly at the last position,
      regression_targets there the sum of the two marked values (0 elsewhere), targets all 0,
      distance there n - 1 - p1 (0 elsewhere), attractors None.
    """
    n, levels = self.length, self.num_levels
    half = n // 2
    key_levels, key_first, key_second = jax.random.split(key, 3)
    levels_BxT = jax.random.randint(key_levels, (batch_size, n), 0, levels, jnp.int32)
    if self.fixed_distance:
      first_Bx1 = jnp.full((batch_size, 1), n - 1 - self.fixed_distance, jnp.int32)
    else:
      first_Bx1 = jax.random.randint(key_first, (batch_size, 1), 0, half, jnp.int32)
    second_Bx1 = jax.random.randint(key_second, (batch_size, 1), half, n, jnp.int32)
    t_1xT = jnp.arange(n, dtype=jnp.int32)[None, :]
    marked_BxT = (t_1xT == first_Bx1) | (t_1xT == second_Bx1)
    inputs_BxT = levels_BxT + levels * marked_BxT.astype(jnp.int32)
    total_B = jnp.where(marked_BxT, values_of(levels_BxT, levels), 0.0).sum(axis=1)

    is_last_1xT = t_1xT == n - 1
    weights_BxT = jnp.broadcast_to(is_last_1xT, (batch_size, n)).astype(jnp.float32)
    return Batch(
        inputs=inputs_BxT,
        targets=jnp.zeros((batch_size, n), jnp.int32),
        weights=weights_BxT,
        loss_weights=weights_BxT,
        distance=jnp.where(is_last_1xT, n - 1 - first_Bx1, 0).astype(jnp.int32),
        attractors=None,
        regression_targets=jnp.where(is_last_1xT, total_B[:, None], 0.0).astype(jnp.float32))


def values_of(levels: jax.Array, num_levels: int) -> jax.Array:
  """The number in [0, 1] that quantisation level k stands for: (k + 0.5) / N."""
  return (levels.astype(jnp.float32) + 0.5) / num_levels
