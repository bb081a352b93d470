"""Copying long strings (Jelassi et al. 2024, "Repeat After Me"; sjelassi/transformers_ssm_copy).

A random string s of length L, a separator, then the model writes s again, one symbol per
step, reading its own previous output (teacher forcing, as in the paper's next-token training):

  position  0 .. L-1      L      L+1 .. 2L-1      2L .. T-1
  inputs    s_1 .. s_L    SEP    s_1 .. s_{L-1}    PAD
  targets   PAD .......   s_1    s_2 ... s_L       PAD

Token ids: 0 = PAD, 1..A = symbols, A+1 = SEP (vocab_size = A + 2). Every example draws L
uniformly from [min_length, max_length] and is padded at the end to 2 * max_length. The L
copy positions are scored and carry the loss (the paper masks all but the answer); symbol j
is emitted exactly L steps after it was read, so the distance of every scored position of an
example is its string length, and accuracy by distance is accuracy against L.

`sequence_accuracy` (every symbol of the copy right under teacher forcing) equals the paper's
string accuracy under greedy generation: if every teacher-forced prediction is right, greedy
decoding feeds itself exactly the teacher's inputs. Unlike the paper we put one string per
sequence (it packs several into a 220-token context) and score no end-of-string token.

Legend: B batch, T time (sequence length 2 * max_length), M = max_length.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from seqresearch.tasks.base import (Batch, LongestTrainedDistance, SymbolAlphabet,
                                    check_at_least, check_distance, check_min_max, draw_symbols)

PAD = 0


@dataclasses.dataclass(frozen=True)
class LongCopySettings(SymbolAlphabet, LongestTrainedDistance):
  """Settings of the long-string copy task (frozen, so usable as a static jit argument).

  Attributes:
    num_symbols: A, the alphabet of the strings (the paper: 26 letters).
    min_length: shortest string L.
    max_length: longest string; L is uniform in [min_length, max_length].

  `vocab_size` (A + 2: PAD, A symbols, SEP) and `chance_accuracy` (1/A per symbol; a whole
  string: (1/A)^L) come from `SymbolAlphabet`; `max_distance` from `LongestTrainedDistance`
  (max_length: every symbol is copied L steps after it was read).
  """

  num_symbols: int = 26
  min_length: int = 4
  max_length: int = 32

  def __post_init__(self) -> None:
    check_at_least(self, num_symbols=2)
    check_min_max(self, "min_length", "max_length", 1)

  separator = SymbolAlphabet.control_token  # the token that starts the copy

  @property
  def seq_len(self) -> int:
    return 2 * self.max_length

  @property
  def trained_distances(self) -> tuple[int, int]:
    return self.min_length, self.max_length

  def at_distance(self, distance: int) -> LongCopySettings:
    """These settings with every string of length `distance`.

    Raises:
      ValueError: distance < 1.
    """
    check_distance(distance, 1, "the string length; must be an integer >= 1.")
    return dataclasses.replace(self, min_length=distance, max_length=distance)

  def eval_constants(self) -> dict[str, float]:
    """The loss of a model that remembers no symbol: ln A per copied symbol."""
    return {"memoryless_baseline_loss": math.log(self.num_symbols)}

  def make_batch(self, key: jax.Array, batch_size: int) -> Batch:
    """Draws a batch of long-string copy examples.

    Pure and jittable with `self` and `batch_size` static (see `tasks.make_batch`).

    Returns:
      Batch with [B, 2M] fields: weights = loss_weights = 1 exactly at the L_b copy positions
      L_b .. 2L_b - 1, targets there s_1 .. s_L, distance there L_b, attractors None.
    """
    m = self.max_length
    key_string, key_length = jax.random.split(key)
    string_BxM = draw_symbols(key_string, batch_size, m, self.num_symbols)
    length_Bx1 = jax.random.randint(key_length, (batch_size, 1), self.min_length,
                                    self.max_length + 1, jnp.int32)
    t_BxT = jnp.broadcast_to(jnp.arange(2 * m, dtype=jnp.int32), (batch_size, 2 * m))
    is_copy_BxT = (t_BxT >= length_Bx1) & (t_BxT < 2 * length_Bx1)

    def symbol_at(index_BxT):
      return jnp.take_along_axis(string_BxM, jnp.clip(index_BxT, 0, m - 1), axis=1)

    inputs_BxT = jnp.where(t_BxT < length_Bx1, symbol_at(t_BxT), PAD)
    inputs_BxT = jnp.where(t_BxT == length_Bx1, self.separator, inputs_BxT)
    inputs_BxT = jnp.where(is_copy_BxT & (t_BxT > length_Bx1),
                           symbol_at(t_BxT - length_Bx1 - 1), inputs_BxT)
    targets_BxT = jnp.where(is_copy_BxT, symbol_at(t_BxT - length_Bx1), PAD)
    weights_BxT = is_copy_BxT.astype(jnp.float32)
    distance_BxT = jnp.where(is_copy_BxT, length_Bx1, 0)
    return Batch(inputs=inputs_BxT.astype(jnp.int32), targets=targets_BxT.astype(jnp.int32),
                 weights=weights_BxT, loss_weights=weights_BxT,
                 distance=distance_BxT.astype(jnp.int32), attractors=None)
