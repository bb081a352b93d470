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

from seqresearch.tasks.base import (Batch, LongestTrainedDistance, SymbolAlphabet,
                                    check_at_least, check_distance, check_fixed_distance,
                                    check_int, distance_range, distinct_indices, draw_symbols)

NOISE = 0


@dataclasses.dataclass(frozen=True)
class SelectiveCopySettings(SymbolAlphabet, LongestTrainedDistance):
  """Settings of the selective copying task (frozen, so usable as a static jit argument).

  Attributes:
    num_symbols: A, the alphabet of the symbols to copy (ids 1..A).
    copy_length: M, the symbols to remember and emit per example.
    context_len: C, the positions the symbols are scattered over (>= M); the sequence has
      C + M tokens.
    fixed_distance: 0 (random positions), or d in [M, C]: every output exactly d steps after
      its symbol (the symbols contiguous). 0 means off, as in `optimizer.grad_clip_norm`.

  `vocab_size` (A + 2: NOISE, A symbols, MARKER) and `chance_accuracy` (1/A: a uniform guess
  among the symbols) come from `SymbolAlphabet`; `max_distance` (C: the first symbol at 0,
  emitted at C; or fixed_distance) from `LongestTrainedDistance`.
  """

  num_symbols: int = 8
  copy_length: int = 8
  context_len: int = 64
  fixed_distance: int = 0

  def __post_init__(self) -> None:
    check_at_least(self, num_symbols=2, copy_length=1)
    m = self.copy_length
    check_int("context_len", self.context_len, m,
              f">= task.copy_length = {m} (every symbol needs its own position)")
    check_fixed_distance(self.fixed_distance, m, self.context_len,
                         "[task.copy_length, task.context_len]",
                         "the symbol block must fit in the context")

  marker = SymbolAlphabet.control_token  # the token that asks for the next symbol

  @property
  def seq_len(self) -> int:
    return self.context_len + self.copy_length

  @property
  def trained_distances(self) -> tuple[int, int]:
    return distance_range(self.fixed_distance, self.copy_length, self.context_len)

  def at_distance(self, distance: int) -> SelectiveCopySettings:
    """These settings with every output exactly `distance` steps after its symbol.

    The context grows to `distance` positions if it was shorter.

    Raises:
      ValueError: distance < M (the M outputs follow the context).
    """
    m = self.copy_length
    check_distance(distance, m, f"selective copying with task.copy_length={m} emits after the "
                   f"context, so distances must be integers >= {m}.")
    return dataclasses.replace(self, fixed_distance=distance,
                               context_len=max(self.context_len, distance))

  def eval_constants(self) -> dict[str, float]:
    """The loss of a model that knows the layout but no symbol: ln A per scored position."""
    return {"memoryless_baseline_loss": math.log(self.num_symbols)}

  def make_batch(self, key: jax.Array, batch_size: int) -> Batch:
    """Draws a batch of selective-copying examples.

    Pure and jittable with `self` and `batch_size` static (see `tasks.make_batch`).

    Returns:
      Batch with [B, C + M] fields: weights = loss_weights = 1 exactly at the M marker
      positions, targets there the symbols in order, distance there C + j - 1 - p_j,
      attractors None.
    """
    m, c = self.copy_length, self.context_len
    key_symbols, key_positions = jax.random.split(key)
    symbols_BxM = draw_symbols(key_symbols, batch_size, m, self.num_symbols)
    if self.fixed_distance:
      positions_BxM = jnp.broadcast_to(
          c - self.fixed_distance + jnp.arange(m, dtype=jnp.int32), (batch_size, m))
    else:
      positions_BxM = jnp.sort(distinct_indices(key_positions, batch_size, c, m), axis=1)

    rows_Bx1 = jnp.arange(batch_size)[:, None]
    context_BxC = jnp.zeros((batch_size, c), jnp.int32).at[rows_Bx1, positions_BxM].set(
        symbols_BxM)
    inputs_BxT = jnp.concatenate(
        [context_BxC, jnp.full((batch_size, m), self.marker, jnp.int32)], axis=1)
    targets_BxT = jnp.concatenate([jnp.zeros((batch_size, c), jnp.int32), symbols_BxM], axis=1)
    is_output_1xT = (jnp.arange(c + m) >= c)[None, :]
    weights_BxT = jnp.broadcast_to(is_output_1xT, (batch_size, c + m)).astype(jnp.float32)
    distance_BxM = c + jnp.arange(m, dtype=jnp.int32)[None, :] - positions_BxM
    distance_BxT = jnp.concatenate([jnp.zeros((batch_size, c), jnp.int32), distance_BxM],
                                   axis=1)
    return Batch(inputs=inputs_BxT, targets=targets_BxT, weights=weights_BxT,
                 loss_weights=weights_BxT, distance=distance_BxT, attractors=None)
