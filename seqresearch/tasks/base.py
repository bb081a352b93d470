"""What the tasks share: the batch every task returns, the validators of task settings, and the
token layout of the symbol tasks.

Legend: B batch, T time (sequence length), A alphabet (`num_symbols`).
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


def check_at_least(settings: object, **lows: int) -> None:
  """`check_int` of each `field=low`: `task.<field>` must be an integer >= low."""
  for name, low in lows.items():
    check_int(name, getattr(settings, name), low, f">= {low}")


def check_min_max(settings: object, min_field: str, max_field: str, low: int) -> None:
  """`task.<min_field>` must be an integer >= low and `task.<max_field>` one >= it."""
  least = getattr(settings, min_field)
  check_int(min_field, least, low, f">= {low}")
  check_int(max_field, getattr(settings, max_field), least, f">= task.{min_field}={least}")


def check_distance(distance: object, low: int, reason: str) -> None:
  """Raises ValueError unless `distance` (the argument of `at_distance`) is an integer >= `low`.

  The message reads 'distance <value>: <reason>'; `reason` says why the task needs `low`.
  """
  if isinstance(distance, bool) or not isinstance(distance, int) or distance < low:
    raise ValueError(f"distance {distance!r}: {reason}")


def check_fixed_distance(value: object, low: int, high: int, bounds: str, reason: str) -> None:
  """Raises ValueError naming `task.fixed_distance` unless it is 0 (off) or an integer in
  [low, high].

  Args:
    value: the field's value.
    low, high: the distances the task's layout can place at every scored position.
    bounds: how [low, high] follow from the other fields, e.g. '[1, task.length - 2]'.
    reason: why a distance outside them does not fit (said for an integer out of range).
  """
  allowed = f"in {bounds} = [{low}, {high}], or 0 (off)"
  check_int("fixed_distance", value, 0, allowed)
  if value and not low <= value <= high:
    raise ValueError(f"task.fixed_distance={value}: {reason}; must be {allowed}.")


def distance_range(fixed_distance: int, low: int, high: int) -> tuple[int, int]:
  """(shortest, longest) dependency distance of a task with a `fixed_distance` field: the
  random layout's (low, high), or (d, d) when fixed_distance = d is on (not 0)."""
  if fixed_distance:
    return fixed_distance, fixed_distance
  return low, high


class LongestTrainedDistance:
  """`max_distance` as the longest of `trained_distances`, for the settings classes where it
  is not a field (all but agreement). A mixin because it is the same property in six
  classes; it holds no task logic."""

  @property
  def max_distance(self) -> int:
    """Largest dependency distance of a scored position: `trained_distances[1]`."""
    return self.trained_distances[1]


class SymbolAlphabet:
  """The token layout of the symbol tasks (copy, long_copy, selective_copy, induction).

  Token 0 is the filler (blank, pad or noise: also the target of unscored positions), 1..A are
  the symbols (A = `num_symbols`, a field of the settings) and A + 1 is the one control token
  (delimiter, separator, marker or trigger). A mixin rather than a helper function because
  these are properties of the settings interface (`vocab_size`, `chance_accuracy`) that would
  otherwise be the same three lines in four classes; it holds no task logic.
  """

  num_symbols: int

  @property
  def control_token(self) -> int:
    """A + 1: the task's delimiter, separator, marker or trigger."""
    return self.num_symbols + 1

  @property
  def vocab_size(self) -> int:
    """A + 2: the filler, A symbols and the control token."""
    return self.num_symbols + 2

  @property
  def chance_accuracy(self) -> float:
    """1/A: a uniform guess among the symbols."""
    return 1.0 / self.num_symbols


def draw_symbols(key: jax.Array, batch_size: int, count: int, num_symbols: int) -> jax.Array:
  """[B, count] int32 symbols, i.i.d. uniform over 1..num_symbols."""
  return jax.random.randint(key, (batch_size, count), 1, num_symbols + 1, jnp.int32)


def distinct_indices(key: jax.Array, batch_size: int, population: int, count: int) -> jax.Array:
  """[B, count] int32: per row, `count` distinct indices drawn uniformly from [0, population).

  The order within a row is uniformly random too (the first `count` entries of a random
  permutation). Requires count <= population (checked by the settings' validation).
  """
  noise_BxP = jax.random.uniform(key, (batch_size, population))
  return jnp.argsort(noise_BxP, axis=1)[:, :count].astype(jnp.int32)
