"""Copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

Token ids: 0 = blank, 1..K = symbols, K+1 = delimiter (vocab_size = K + 2). One example with
delay T and copy length L (length T + 2L):

  position  0 .. L-1     L .. L+T-2    L+T-1       L+T .. T+2L-1
  inputs    s_1 .. s_L   blank ...     delimiter   blank ...
  targets   blank .....  blank ...     blank       s_1 .. s_L

Symbol s_i is read at position i-1 and recalled at position T+L+i-1: every recalled symbol
lies exactly T + L steps back. When the delay varies per example, every example is padded at
the END with blanks up to `seq_len` = max_delay + 2L; padding carries no loss.

Legend: B batch, T time (sequence length `seq_len`), L copy length.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from seqresearch.tasks.base import (Batch, LongestTrainedDistance, SymbolAlphabet,
                                    check_at_least, check_distance, check_min_max, draw_symbols)

BLANK = 0


@dataclasses.dataclass(frozen=True)
class CopySettings(SymbolAlphabet, LongestTrainedDistance):
  """Settings of the copy-memory task (frozen, so usable as a static jit argument).

  Attributes:
    num_symbols: K, the number of distinct symbols to remember (ids 1..K).
    copy_length: L, the number of symbols to remember and recall.
    min_delay: smallest delay T, the number of steps from the last symbol to the delimiter
      (T - 1 blanks lie between them).
    max_delay: largest delay T; each example draws T uniformly from [min_delay, max_delay].

  `vocab_size` (K + 2: blank, K symbols, delimiter) and `chance_accuracy` (1/K) come from
  `SymbolAlphabet`, `max_distance` (max_delay + L) from `LongestTrainedDistance`.
  """

  num_symbols: int = 8
  copy_length: int = 10
  min_delay: int = 100
  max_delay: int = 100

  def __post_init__(self) -> None:
    check_at_least(self, num_symbols=2, copy_length=1)
    check_min_max(self, "min_delay", "max_delay", 1)

  delimiter = SymbolAlphabet.control_token  # the token that asks for the recall

  @property
  def seq_len(self) -> int:
    """Length of every batch: the longest example, max_delay + 2L."""
    return self.max_delay + 2 * self.copy_length

  @property
  def trained_distances(self) -> tuple[int, int]:
    """(shortest, longest) dependency distance these settings produce: delay + L."""
    return self.min_delay + self.copy_length, self.max_delay + self.copy_length

  def at_distance(self, distance: int) -> CopySettings:
    """These settings with every dependency at `distance` (delay = distance - L).

    Raises:
      ValueError: distance <= L (the copy task's distances are delay + L).
    """
    check_distance(distance, self.copy_length + 1,
                   f"the copy task's distances are delay + L, so they must be integers > L = "
                   f"{self.copy_length}.")
    delay = distance - self.copy_length
    return dataclasses.replace(self, min_delay=delay, max_delay=delay)

  def eval_constants(self) -> dict[str, float]:
    """Reference numbers every eval line carries: the memoryless baseline loss."""
    return {"memoryless_baseline_loss": memoryless_baseline(self)}

  def make_batch(self, key: jax.Array, batch_size: int) -> Batch:
    """Draws a batch of copy-memory examples.

    Pure and jittable with `self` and `batch_size` static (see `tasks.make_batch`).

    Returns:
      Batch with [B, T] inputs/targets/weights/loss_weights/distance (T = seq_len): weights 1
      exactly at the L recall positions, distance T_b + L there (T_b the example's delay),
      loss_weights 1 at every unpadded position, attractors None.
    """
    num_steps = self.seq_len
    length = self.copy_length
    key_symbols, key_delay = jax.random.split(key)
    symbols_BxL = draw_symbols(key_symbols, batch_size, length, self.num_symbols)
    delay_B = jax.random.randint(
        key_delay, (batch_size,), self.min_delay, self.max_delay + 1, dtype=jnp.int32)

    t_1xT = jnp.arange(num_steps, dtype=jnp.int32)[None, :]
    delimiter_pos_Bx1 = (length + delay_B - 1)[:, None]
    recall_start_Bx1 = (delay_B + length)[:, None]
    end_Bx1 = (delay_B + 2 * length)[:, None]

    symbols_at_input_BxT = jnp.pad(symbols_BxL, ((0, 0), (0, num_steps - length)))
    inputs_BxT = jnp.where(t_1xT == delimiter_pos_Bx1, self.delimiter, symbols_at_input_BxT)

    is_recall_BxT = (t_1xT >= recall_start_Bx1) & (t_1xT < end_Bx1)
    # Index of the symbol recalled at each position; clipped where it is not a recall
    # position so the gather stays in bounds, then masked to blank.
    source_BxT = jnp.clip(t_1xT - recall_start_Bx1, 0, length - 1)
    recalled_BxT = jnp.take_along_axis(symbols_BxL, source_BxT, axis=1)
    targets_BxT = jnp.where(is_recall_BxT, recalled_BxT, BLANK)

    weights_BxT = is_recall_BxT.astype(jnp.float32)
    loss_weights_BxT = (t_1xT < end_Bx1).astype(jnp.float32)
    distance_BxT = jnp.where(is_recall_BxT, recall_start_Bx1, 0).astype(jnp.int32)
    return Batch(
        inputs=inputs_BxT.astype(jnp.int32),
        targets=targets_BxT.astype(jnp.int32),
        weights=weights_BxT,
        loss_weights=loss_weights_BxT,
        distance=distance_BxT,
        attractors=None)


def memoryless_baseline(settings: CopySettings) -> float:
  """Cross-entropy (nats per loss position) of the best predictor that remembers no symbol.

  Such a predictor knows the layout (it sees the delimiter), so it emits blank with certainty
  everywhere except at the L recall positions, where it can only be uniform over the K
  symbols: a total loss of L·ln(K) per example. The training loss averages over all loss
  positions of a batch (sum of per-token loss / sum of loss_weights), so for a fixed delay T
  the baseline is L·ln(K) / (T + 2L) (10·ln 8 / 120 = 0.1733 for K=8, L=10, T=100). For a
  delay range, it is the limit of that ratio of sums for a large batch,
  L·ln(K) / (mean_delay + 2L) with mean_delay = (min_delay + max_delay) / 2 — not the mean
  of the per-delay baselines.

  Args:
    settings: the task settings.

  Returns:
    The baseline loss in nats per loss position.
  """
  mean_delay = (settings.min_delay + settings.max_delay) / 2
  length = settings.copy_length
  return length * math.log(settings.num_symbols) / (mean_delay + 2 * length)
