"""Multi-query associative recall, MQAR (Arora et al. 2023, "Zoology", §3 and App. C).

The model reads K key-value pairs, then a query region in which every key appears once more,
at a random position; at each query it must emit the value that followed that key.

  position  0   1   2   3  ... 2K-2  2K-1   2K .. length-1
  inputs    k1  v1  k2  v2 ... kK    vK     filler ... k_i (at q_i) ... filler
  targets   BLANK ........................... v_i at q_i, BLANK elsewhere

Token ids come from disjoint ranges: 0 = BLANK, then `num_keys` keys, `num_values` values and
`num_fillers` filler ids (vocab_size = 1 + num_keys + num_values + num_fillers). Fillers are
BLANK when `num_fillers` is 0, else uniform over their own range, so a filler can never equal
a key or a value (the collision of zoology issue #29). Keys and values are each drawn without
replacement, so every query has exactly one right answer.

The query positions are K distinct positions drawn uniformly from the query region, in a
uniformly random order (Zoology biases them towards the end with a power law; we do not, so
all distances are represented). The distance of a query is the number of steps back to the
value it must recall: q_i - (2i + 1), between 1 and length - 2. With `fixed_distance = d`
(0, the default, is off), query i sits at 2i + 1 + d instead, so every query is exactly d
steps from its value (the queries then come in pair order, and copying the token d steps
back solves it: an evaluation probe, not a training setting).

Only the query positions are scored and carry loss, as in Zoology (labels -100 elsewhere).

Legend: B batch, T time (sequence length `seq_len`), K pairs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from seqresearch.tasks.base import (Batch, LongestTrainedDistance, check_at_least,
                                    check_distance, check_fixed_distance, check_int,
                                    distance_range, distinct_indices)

BLANK = 0


@dataclasses.dataclass(frozen=True)
class MQARSettings(LongestTrainedDistance):
  """Settings of the MQAR task (frozen, so usable as a static jit argument).

  Attributes:
    num_pairs: K, the key-value pairs per example (Zoology's `num_kv_pairs`).
    length: tokens per example (context 2K + query region); >= 3K so every key fits a query.
    num_keys: size of the key alphabet (>= K: keys are distinct within an example).
    num_values: size of the value alphabet (>= K: values are distinct within an example).
    num_fillers: filler ids between the queries; 0 fills with BLANK (Zoology's
      `random_non_queries=False`, used in its Figure 2).
    fixed_distance: 0 (queries at random positions), or d: every query exactly d steps
      after its value; needs 2K - 1 <= d <= length - 2K. (0 means off, as in
      `optimizer.grad_clip_norm`, so the config field is a plain int.)

  `max_distance` (length - 2, or fixed_distance) comes from `LongestTrainedDistance`.
  """

  num_pairs: int = 8
  length: int = 64
  num_keys: int = 64
  num_values: int = 64
  num_fillers: int = 0
  fixed_distance: int = 0

  def __post_init__(self) -> None:
    check_at_least(self, num_pairs=1)
    k = self.num_pairs
    check_int("length", self.length, 3 * k,
              f">= 3 * task.num_pairs = {3 * k} (2K context tokens and one query per key)")
    check_int("num_keys", self.num_keys, k,
              f">= task.num_pairs = {k} (keys are distinct within an example)")
    check_int("num_values", self.num_values, k,
              f">= task.num_pairs = {k} (values are distinct within an example)")
    check_int("num_fillers", self.num_fillers, 0, ">= 0")
    check_fixed_distance(
        self.fixed_distance, 2 * k - 1, self.length - 2 * k,
        "[2 * task.num_pairs - 1, task.length - 2 * task.num_pairs]",
        "the queries must lie between the 2K-token context and the end of task.length (or "
        "raise task.length to >= fixed_distance + 2 * num_pairs)")

  @property
  def key_start(self) -> int:
    """First key id (keys are key_start .. key_start + num_keys - 1)."""
    return 1

  @property
  def value_start(self) -> int:
    """First value id."""
    return 1 + self.num_keys

  @property
  def filler_start(self) -> int:
    """First filler id."""
    return 1 + self.num_keys + self.num_values

  @property
  def vocab_size(self) -> int:
    """BLANK, keys, values, fillers."""
    return 1 + self.num_keys + self.num_values + self.num_fillers

  @property
  def trained_distances(self) -> tuple[int, int]:
    """(1, length - 2) with random queries (the last pair queried right after the context,
    the first at the end), or (d, d) with fixed_distance = d."""
    return distance_range(self.fixed_distance, 1, self.length - 2)

  @property
  def seq_len(self) -> int:
    return self.length

  @property
  def chance_accuracy(self) -> float:
    """1/K: guessing uniformly among the K values of the context (the best a model that keeps
    the values but no key-value association can do; a guess over the whole value alphabet
    scores 1/num_values)."""
    return 1.0 / self.num_pairs

  def at_distance(self, distance: int) -> MQARSettings:
    """These settings with every query exactly `distance` steps after its value.

    The sequence grows to distance + 2K tokens if it was shorter.

    Raises:
      ValueError: distance < 2K - 1 (a query cannot precede the end of the context).
    """
    k = self.num_pairs
    check_distance(distance, 2 * k - 1, f"MQAR with task.num_pairs={k} puts every query after "
                   f"the 2K-token context, so distances must be integers >= {2 * k - 1}.")
    return dataclasses.replace(self, fixed_distance=distance,
                               length=max(self.length, distance + 2 * k))

  def eval_constants(self) -> dict[str, float]:
    """Chance levels every eval line carries: among the context's values, over all values."""
    return {"chance_accuracy": self.chance_accuracy,
            "chance_accuracy_any_value": 1.0 / self.num_values}

  def make_batch(self, key: jax.Array, batch_size: int) -> Batch:
    """Draws a batch of MQAR examples.

    Pure and jittable with `self` and `batch_size` static (see `tasks.make_batch`).

    Returns:
      Batch with [B, T] fields: weights = loss_weights = 1 exactly at the K query positions,
      targets there the queried key's value (BLANK elsewhere), distance there q_i - (2i + 1)
      (0 elsewhere), attractors None.
    """
    k, num_steps = self.num_pairs, self.length
    key_keys, key_values, key_queries, key_fillers = jax.random.split(key, 4)
    keys_BxK = self.key_start + distinct_indices(key_keys, batch_size, self.num_keys, k)
    values_BxK = self.value_start + distinct_indices(
        key_values, batch_size, self.num_values, k)
    if not self.fixed_distance:
      query_pos_BxK = 2 * k + distinct_indices(key_queries, batch_size, num_steps - 2 * k, k)
    else:
      query_pos_BxK = jnp.broadcast_to(
          2 * jnp.arange(k, dtype=jnp.int32) + 1 + self.fixed_distance, (batch_size, k))

    if self.num_fillers:
      inputs_BxT = jax.random.randint(key_fillers, (batch_size, num_steps), self.filler_start,
                                      self.filler_start + self.num_fillers, jnp.int32)
    else:
      inputs_BxT = jnp.full((batch_size, num_steps), BLANK, jnp.int32)
    rows_Bx1 = jnp.arange(batch_size)[:, None]
    pair_pos_1xK = 2 * jnp.arange(k, dtype=jnp.int32)[None, :]
    inputs_BxT = inputs_BxT.at[rows_Bx1, pair_pos_1xK].set(keys_BxK)
    inputs_BxT = inputs_BxT.at[rows_Bx1, pair_pos_1xK + 1].set(values_BxK)
    inputs_BxT = inputs_BxT.at[rows_Bx1, query_pos_BxK].set(keys_BxK)

    zeros_BxT = jnp.zeros((batch_size, num_steps), jnp.int32)
    targets_BxT = zeros_BxT.at[rows_Bx1, query_pos_BxK].set(values_BxK)
    weights_BxT = zeros_BxT.at[rows_Bx1, query_pos_BxK].set(1).astype(jnp.float32)
    distance_BxT = zeros_BxT.at[rows_Bx1, query_pos_BxK].set(query_pos_BxK - pair_pos_1xK - 1)
    return Batch(inputs=inputs_BxT, targets=targets_BxT, weights=weights_BxT,
                 loss_weights=weights_BxT, distance=distance_BxT, attractors=None)
