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

from seqresearch.tasks.base import Batch, check_int

PAD = 0


@dataclasses.dataclass(frozen=True)
class LongCopySettings:
  """Settings of the long-string copy task (frozen, so usable as a static jit argument).

  Attributes:
    num_symbols: A, the alphabet of the strings (the paper: 26 letters).
    min_length: shortest string L.
    max_length: longest string; L is uniform in [min_length, max_length].
  """

  num_symbols: int = 26
  min_length: int = 4
  max_length: int = 32

  def __post_init__(self) -> None:
    check_int("num_symbols", self.num_symbols, 2, ">= 2")
    check_int("min_length", self.min_length, 1, ">= 1")
    check_int("max_length", self.max_length, self.min_length,
              f">= task.min_length={self.min_length}")

  @property
  def separator(self) -> int:
    """Token id of the separator that starts the copy."""
    return self.num_symbols + 1

  @property
  def vocab_size(self) -> int:
    """PAD, A symbols, SEP."""
    return self.num_symbols + 2

  @property
  def seq_len(self) -> int:
    return 2 * self.max_length

  @property
  def max_distance(self) -> int:
    """The longest string: every symbol is copied L steps after it was read."""
    return self.max_length

  @property
  def trained_distances(self) -> tuple[int, int]:
    return self.min_length, self.max_length

  @property
  def chance_accuracy(self) -> float:
    """1/A per symbol (a whole string: (1/A)^L)."""
    return 1.0 / self.num_symbols

  def at_distance(self, distance: int) -> LongCopySettings:
    """These settings with every string of length `distance`.

    Raises:
      ValueError: distance < 1.
    """
    if isinstance(distance, bool) or not isinstance(distance, int) or distance < 1:
      raise ValueError(f"distance {distance!r}: the string length; must be an integer >= 1.")
    return dataclasses.replace(self, min_length=distance, max_length=distance)

  def eval_constants(self) -> dict[str, float]:
    """The loss of a model that remembers no symbol: ln A per copied symbol."""
    return {"memoryless_baseline_loss": math.log(self.num_symbols)}

  def make_batch(self, key: jax.Array, batch_size: int) -> Batch:
    """`make_batch(key, self, batch_size)`."""
    return make_batch(key, self, batch_size)


def make_batch(key: jax.Array, settings: LongCopySettings, batch_size: int) -> Batch:
  """Draws a batch of long-string copy examples.

  Pure and jittable with `settings` and `batch_size` static (see `tasks.make_batch`).

  Returns:
    Batch with [B, 2M] fields: weights = loss_weights = 1 exactly at the L_b copy positions
    L_b .. 2L_b - 1, targets there s_1 .. s_L, distance there L_b, attractors None.
  """
  m = settings.max_length
  key_string, key_length = jax.random.split(key)
  string_BxM = jax.random.randint(key_string, (batch_size, m), 1, settings.num_symbols + 1,
                                  jnp.int32)
  length_Bx1 = jax.random.randint(key_length, (batch_size, 1), settings.min_length,
                                  settings.max_length + 1, jnp.int32)
  t_BxT = jnp.broadcast_to(jnp.arange(2 * m, dtype=jnp.int32), (batch_size, 2 * m))
  is_copy_BxT = (t_BxT >= length_Bx1) & (t_BxT < 2 * length_Bx1)

  def symbol_at(index_BxT):
    return jnp.take_along_axis(string_BxM, jnp.clip(index_BxT, 0, m - 1), axis=1)

  inputs_BxT = jnp.where(t_BxT < length_Bx1, symbol_at(t_BxT), PAD)
  inputs_BxT = jnp.where(t_BxT == length_Bx1, settings.separator, inputs_BxT)
  inputs_BxT = jnp.where(is_copy_BxT & (t_BxT > length_Bx1),
                         symbol_at(t_BxT - length_Bx1 - 1), inputs_BxT)
  targets_BxT = jnp.where(is_copy_BxT, symbol_at(t_BxT - length_Bx1), PAD)
  weights_BxT = is_copy_BxT.astype(jnp.float32)
  distance_BxT = jnp.where(is_copy_BxT, length_Bx1, 0)
  return Batch(inputs=inputs_BxT.astype(jnp.int32), targets=targets_BxT.astype(jnp.int32),
               weights=weights_BxT, loss_weights=weights_BxT,
               distance=distance_BxT.astype(jnp.int32), attractors=None)
