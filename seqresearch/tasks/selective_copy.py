"""Selective copying (Gu & Dao 2023, "Mamba", §4.1.1 and App. E.1).

The copy task with the symbols at random positions: M symbols sit at M distinct, uniformly
random positions among noise tokens in a context of C positions; then come M marker tokens,
and at the j-th marker the model must emit the j-th symbol (in order of position).

  position  0 .. C-1                               C .. C+M-1
  inputs    NOISE ... s_1 ... NOISE ... s_M ...     MARKER ... MARKER
  targets   NOISE ..............................    s_1 ...... s_M

The Mamba authors did not release their generator (state-spaces/mamba #343); this follows the
layout of the public S4 `copying(variable=True)` generator it is usually reproduced with: the
symbols keep their order, and only the M outputs are scored and carry loss.

Token ids: 0 = NOISE (also the target of unscored positions), 1..A = symbols, A+1 = MARKER
(vocab_size = A + 2). The j-th output, at position C + j - 1, depends on the symbol at p_j:
its distance is C + j - 1 - p_j, between M and C (as j - 1 <= p_j <= C - M + j - 1). With
`fixed_distance = d` (0, the default, is off) the symbols instead fill the block
C - d .. C - d + M - 1, so every output is exactly d steps from its symbol: the plain copy
task, used as an evaluation probe.

Legend: B batch, T time (sequence length C + M), M copy length, C context length.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from seqresearch.tasks.base import Batch, check_int, distinct_indices

NOISE = 0


@dataclasses.dataclass(frozen=True)
class SelectiveCopySettings:
  """Settings of the selective copying task (frozen, so usable as a static jit argument).

  Attributes:
    num_symbols: A, the alphabet of the symbols to copy (ids 1..A).
    copy_length: M, the symbols to remember and emit per example.
    context_len: C, the positions the symbols are scattered over (>= M); the sequence has
      C + M tokens.
    fixed_distance: 0 (random positions), or d in [M, C]: every output exactly d steps after
      its symbol (the symbols contiguous). 0 means off, as in `optimizer.grad_clip_norm`.
  """

  num_symbols: int = 8
  copy_length: int = 8
  context_len: int = 64
  fixed_distance: int = 0

  def __post_init__(self) -> None:
    check_int("num_symbols", self.num_symbols, 2, ">= 2")
    check_int("copy_length", self.copy_length, 1, ">= 1")
    m = self.copy_length
    check_int("context_len", self.context_len, m,
              f">= task.copy_length = {m} (every symbol needs its own position)")
    check_int("fixed_distance", self.fixed_distance, 0,
              f"in [task.copy_length, task.context_len] = [{m}, {self.context_len}], or 0 (off)")
    if self.fixed_distance and not m <= self.fixed_distance <= self.context_len:
      raise ValueError(
          f"task.fixed_distance={self.fixed_distance}: the symbol block must fit in the "
          f"context; must be in [task.copy_length, task.context_len] = [{m}, "
          f"{self.context_len}], or 0 (off: random positions).")

  @property
  def marker(self) -> int:
    """Token id of the marker that asks for the next symbol."""
    return self.num_symbols + 1

  @property
  def vocab_size(self) -> int:
    """NOISE, A symbols, MARKER."""
    return self.num_symbols + 2

  @property
  def seq_len(self) -> int:
    return self.context_len + self.copy_length

  @property
  def max_distance(self) -> int:
    """C (random positions: the first symbol at 0, emitted at C) or fixed_distance."""
    return self.fixed_distance or self.context_len

  @property
  def trained_distances(self) -> tuple[int, int]:
    if self.fixed_distance:
      return self.fixed_distance, self.fixed_distance
    return self.copy_length, self.context_len

  @property
  def chance_accuracy(self) -> float:
    """1/A: a uniform guess among the symbols."""
    return 1.0 / self.num_symbols

  def at_distance(self, distance: int) -> SelectiveCopySettings:
    """These settings with every output exactly `distance` steps after its symbol.

    The context grows to `distance` positions if it was shorter.

    Raises:
      ValueError: distance < M (the M outputs follow the context).
    """
    m = self.copy_length
    if isinstance(distance, bool) or not isinstance(distance, int) or distance < m:
      raise ValueError(f"distance {distance!r}: selective copying with task.copy_length={m} "
                       f"emits after the context, so distances must be integers >= {m}.")
    return dataclasses.replace(self, fixed_distance=distance,
                               context_len=max(self.context_len, distance))

  def eval_constants(self) -> dict[str, float]:
    """The loss of a model that knows the layout but no symbol: ln A per scored position."""
    return {"memoryless_baseline_loss": math.log(self.num_symbols)}

  def make_batch(self, key: jax.Array, batch_size: int) -> Batch:
    """`make_batch(key, self, batch_size)`."""
    return make_batch(key, self, batch_size)


def make_batch(key: jax.Array, settings: SelectiveCopySettings, batch_size: int) -> Batch:
  """Draws a batch of selective-copying examples.

  Pure and jittable with `settings` and `batch_size` static (see `tasks.make_batch`).

  Returns:
    Batch with [B, C + M] fields: weights = loss_weights = 1 exactly at the M marker
    positions, targets there the symbols in order, distance there C + j - 1 - p_j,
    attractors None.
  """
  m, c = settings.copy_length, settings.context_len
  key_symbols, key_positions = jax.random.split(key)
  symbols_BxM = jax.random.randint(key_symbols, (batch_size, m), 1, settings.num_symbols + 1,
                                   jnp.int32)
  if settings.fixed_distance:
    positions_BxM = jnp.broadcast_to(
        c - settings.fixed_distance + jnp.arange(m, dtype=jnp.int32), (batch_size, m))
  else:
    positions_BxM = jnp.sort(distinct_indices(key_positions, batch_size, c, m), axis=1)

  rows_Bx1 = jnp.arange(batch_size)[:, None]
  context_BxC = jnp.zeros((batch_size, c), jnp.int32).at[rows_Bx1, positions_BxM].set(symbols_BxM)
  inputs_BxT = jnp.concatenate(
      [context_BxC, jnp.full((batch_size, m), settings.marker, jnp.int32)], axis=1)
  targets_BxT = jnp.concatenate([jnp.zeros((batch_size, c), jnp.int32), symbols_BxM], axis=1)
  is_output_1xT = (jnp.arange(c + m) >= c)[None, :]
  weights_BxT = jnp.broadcast_to(is_output_1xT, (batch_size, c + m)).astype(jnp.float32)
  distance_BxM = c + jnp.arange(m, dtype=jnp.int32)[None, :] - positions_BxM
  distance_BxT = jnp.concatenate([jnp.zeros((batch_size, c), jnp.int32), distance_BxM], axis=1)
  return Batch(inputs=inputs_BxT, targets=targets_BxT, weights=weights_BxT,
               loss_weights=weights_BxT, distance=distance_BxT, attractors=None)
