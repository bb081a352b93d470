"""Induction heads (Olsson et al. 2022; the synthetic task of Gu & Dao 2023, "Mamba", §4.1.2).

A random sequence of symbols holds a trigger token once, followed by a target symbol; at the
end the trigger appears again and the model must emit the symbol that followed it before.

  position  0 .. p-1    p        p+1      p+2 .. L-2    L-1
  inputs    symbols     TRIGGER  target   symbols       TRIGGER
  targets   BLANK ......................................  target

Token ids: 0 = BLANK (the target of unscored positions; never an input), 1..A = symbols,
A+1 = TRIGGER (vocab_size = A + 2). Only the last position is scored and carries loss. Its
distance is the number of steps back to the target symbol: L - 2 - p, with the trigger
position p uniform over 0 .. L-3 (distances 1 .. L-2), or p = L - 2 - fixed_distance.

The L - 2 symbols are a random arrangement of a balanced multiset (every symbol appears
floor or ceil of (L-2)/A times, which symbols get the extra count is random), so counting
symbols tells nothing about the target: with i.i.d. symbols the target, being one more
occurrence, would be the most frequent symbol far more often than 1/A.

Length generalisation (Mamba Table 11: train at 2^8, test at 2^6 .. 2^20): train with one
`length`, then evaluate `at_length(n)` (random trigger positions at the new length) or
`at_distance(d)` (the sequence grows to d + 2 tokens when d > L - 2).

Legend: B batch, T time (sequence length L), N = L - 2 symbol slots, A alphabet.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from seqresearch.tasks.base import (Batch, LongestTrainedDistance, SymbolAlphabet,
                                    check_at_least, check_distance, check_fixed_distance,
                                    check_int, distance_range, distinct_indices)

BLANK = 0


@dataclasses.dataclass(frozen=True)
class InductionSettings(SymbolAlphabet, LongestTrainedDistance):
  """Settings of the induction-heads task (frozen, so usable as a static jit argument).

  Attributes:
    num_symbols: A, the alphabet of the random sequence (ids 1..A; Mamba uses 16).
    length: L, tokens per example including both triggers (>= 3).
    fixed_distance: 0 (random trigger position), or d in [1, L - 2]: the target symbol
      exactly d steps before the end. 0 means off, as in `optimizer.grad_clip_norm`.

  `vocab_size` (A + 2: BLANK, A symbols, TRIGGER) and `chance_accuracy` (1/A: a uniform guess
  among the symbols) come from `SymbolAlphabet`; `max_distance` (L - 2, or fixed_distance)
  from `LongestTrainedDistance`.
  """

  num_symbols: int = 16
  length: int = 64
  fixed_distance: int = 0

  def __post_init__(self) -> None:
    check_at_least(self, num_symbols=2)
    check_int("length", self.length, 3, ">= 3 (trigger, target, trigger)")
    check_fixed_distance(self.fixed_distance, 1, self.length - 2, "[1, task.length - 2]",
                         "the first trigger would fall before the sequence (or raise "
                         "task.length to >= fixed_distance + 2)")

  trigger = SymbolAlphabet.control_token  # the token before the target and at the end

  @property
  def seq_len(self) -> int:
    return self.length

  @property
  def trained_distances(self) -> tuple[int, int]:
    return distance_range(self.fixed_distance, 1, self.length - 2)

  def at_distance(self, distance: int) -> InductionSettings:
    """These settings with the target exactly `distance` steps before the end.

    The sequence grows to distance + 2 tokens if it was shorter (trigger at position 0).

    Raises:
      ValueError: distance < 1.
    """
    check_distance(distance, 1, "induction distances are integers >= 1.")
    return dataclasses.replace(self, fixed_distance=distance,
                               length=max(self.length, distance + 2))

  def at_length(self, length: int) -> InductionSettings:
    """These settings at sequence length `length`, trigger position random (length
    generalisation as in Mamba Table 11). Raises ValueError naming task.length if < 3."""
    return dataclasses.replace(self, length=length, fixed_distance=0)

  def eval_constants(self) -> dict[str, float]:
    """The loss of a model that ignores the trigger: ln A at the scored position."""
    return {"memoryless_baseline_loss": math.log(self.num_symbols)}

  def make_batch(self, key: jax.Array, batch_size: int) -> Batch:
    """Draws a batch of induction-heads examples.

    Pure and jittable with `self` and `batch_size` static (see `tasks.make_batch`).

    Returns:
      Batch with [B, L] fields: weights = loss_weights = 1 exactly at the last position,
      targets there the symbol after the first trigger (BLANK elsewhere), distance there
      L - 2 - p (0 elsewhere), attractors None.
    """
    num_steps, a = self.length, self.num_symbols
    n = num_steps - 2
    key_order, key_labels, key_trigger = jax.random.split(key, 3)
    # Balanced symbols: a random permutation of 0..N-1 taken mod A has every residue
    # floor(N/A) or ceil(N/A) times; a random relabelling decides which symbols get the extra.
    residues_BxN = distinct_indices(key_order, batch_size, n, n) % a
    labels_BxA = 1 + distinct_indices(key_labels, batch_size, a, a)
    symbols_BxN = jnp.take_along_axis(labels_BxA, residues_BxN, axis=1)
    if self.fixed_distance:
      trigger_B = jnp.full((batch_size,), n - self.fixed_distance, jnp.int32)
    else:
      trigger_B = jax.random.randint(key_trigger, (batch_size,), 0, n, jnp.int32)

    t_1xT = jnp.arange(num_steps, dtype=jnp.int32)[None, :]
    trigger_Bx1 = trigger_B[:, None]
    # Slot of position t in the symbol sequence: t before the trigger, t - 1 after it.
    slot_BxT = jnp.clip(t_1xT - (t_1xT > trigger_Bx1), 0, n - 1)
    is_trigger_BxT = (t_1xT == trigger_Bx1) | (t_1xT == num_steps - 1)
    inputs_BxT = jnp.where(is_trigger_BxT, self.trigger,
                           jnp.take_along_axis(symbols_BxN, slot_BxT, axis=1))
    target_B = jnp.take_along_axis(symbols_BxN, trigger_Bx1, axis=1)[:, 0]
    is_last_1xT = t_1xT == num_steps - 1
    targets_BxT = jnp.where(is_last_1xT, target_B[:, None], BLANK).astype(jnp.int32)
    weights_BxT = jnp.broadcast_to(is_last_1xT, (batch_size, num_steps)).astype(jnp.float32)
    distance_BxT = jnp.where(is_last_1xT, (n - trigger_B)[:, None], 0).astype(jnp.int32)
    return Batch(inputs=inputs_BxT.astype(jnp.int32), targets=targets_BxT, weights=weights_BxT,
                 loss_weights=weights_BxT, distance=distance_BxT, attractors=None)
