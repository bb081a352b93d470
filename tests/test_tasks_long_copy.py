"""Long-string copy generator: determinism, targets against a plain-Python reference, masks,
distance = string length, and that no shortcut short of the copy beats chance."""

from __future__ import annotations

import collections
import functools
import math

import jax
import numpy as np
import pytest

from seqresearch import tasks
from seqresearch.tasks import long_copy

_TRACES: collections.Counter = collections.Counter()


def _counted(key, settings, batch_size):
  _TRACES[(settings, batch_size)] += 1
  return tasks.make_batch(key, settings, batch_size)


_make_batch_jit = jax.jit(_counted, static_argnums=(1, 2))


@functools.lru_cache(maxsize=None)
def _batch(settings, batch_size: int, seed: int = 0) -> tasks.Batch:
  return jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(seed), settings, batch_size))


DEFAULT = tasks.LongCopySettings()  # A=26, L in [4, 32]
SMALL = tasks.LongCopySettings(num_symbols=2, min_length=1, max_length=4)
FIXED = tasks.LongCopySettings(min_length=50, max_length=50)
CASES = [pytest.param(DEFAULT, 2048, id="default"), pytest.param(SMALL, 512, id="small"),
         pytest.param(FIXED, 64, id="fixed_length")]


def _reference(inputs_T: np.ndarray, settings: tasks.LongCopySettings):
  """Targets, weights and distances of one example, from its tokens by the task's definition."""
  (sep,) = np.flatnonzero(inputs_T == settings.separator)
  string = inputs_T[:sep]
  assert np.all((string >= 1) & (string <= settings.num_symbols))
  np.testing.assert_array_equal(inputs_T[sep + 1:2 * sep], string[:-1])  # teacher forcing
  assert np.all(inputs_T[2 * sep:] == long_copy.PAD)
  size = len(inputs_T)
  targets, weights, distance = (np.zeros(size, dt) for dt in (np.int32, np.float32, np.int32))
  targets[sep:2 * sep], weights[sep:2 * sep], distance[sep:2 * sep] = string, 1.0, sep
  return targets, weights, distance


@pytest.mark.parametrize("settings,batch_size", CASES)
def test_targets_masks_and_distances_match_reference(settings, batch_size):
  batch = _batch(settings, batch_size)
  assert batch.inputs.shape == (batch_size, settings.seq_len) and batch.inputs.dtype == np.int32
  for b in range(min(batch_size, 200)):
    targets, weights, distance = _reference(batch.inputs[b], settings)
    np.testing.assert_array_equal(batch.targets[b], targets)
    np.testing.assert_array_equal(batch.weights[b], weights)
    np.testing.assert_array_equal(batch.distance[b], distance)
  np.testing.assert_array_equal(batch.loss_weights, batch.weights)
  assert batch.distance.max() <= settings.max_distance and batch.attractors is None


def test_deterministic_per_key_and_traced_once():
  first = _batch(SMALL, 512)
  again = jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(0), SMALL, 512))
  jax.tree.map(np.testing.assert_array_equal, first, again)
  other = jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(1), SMALL, 512))
  assert not np.array_equal(first.inputs, other.inputs)
  assert _TRACES[(SMALL, 512)] == 1


def test_every_length_drawn():
  batch = _batch(DEFAULT, 2048)
  lengths = batch.distance.max(axis=1)
  np.testing.assert_array_equal(lengths, batch.weights.sum(axis=1))
  assert set(lengths.tolist()) == set(range(4, 33))


def test_no_shortcut_short_of_copying_beats_chance():
  batch = _batch(DEFAULT, 2048)
  rows, cols = np.nonzero(batch.weights)
  truth = batch.targets[rows, cols]
  length = batch.distance[rows, cols]
  current = batch.inputs[rows, cols]
  predictions = {
      "repeat_current_input": current,
      "one_too_near": batch.inputs[rows, cols - length + 1],
      # (before the string at the first copy position: no symbol, a miss)
      "one_too_far_back": np.where(cols > length, batch.inputs[rows, cols - length - 1], 0),
  }
  assert np.all(batch.inputs[rows, cols - length] == truth)  # the copy rule
  for name, prediction in predictions.items():
    accuracy = float(np.mean(prediction == truth))
    assert accuracy <= DEFAULT.chance_accuracy + 0.02, (name, accuracy)
  # The paper's mechanism (Jelassi §4): find the previous occurrence of the current symbol in
  # the string and emit what followed it. It needs no position, and beats chance by far.
  def bigram_lookup(r, c, n):
    string, sep_input = batch.inputs[r, :n], batch.inputs[r, c]
    if c == n:
      return string[0]  # right after the separator: the first symbol
    hits = np.flatnonzero(string[:-1] == sep_input)
    return string[hits[0] + 1] if len(hits) else 0
  lookup = np.array([bigram_lookup(r, c, n) for r, c, n in zip(rows[:5000], cols[:5000],
                                                                 length[:5000])])
  assert np.mean(lookup == truth[:5000]) > 0.5


def test_at_distance_sets_the_string_length():
  probe = DEFAULT.at_distance(100)
  assert probe.seq_len == 200 and probe.trained_distances == (100, 100)
  np.testing.assert_array_equal(_batch(probe, 4).weights.sum(axis=1), 100)
  with pytest.raises(ValueError, match="integer >= 1"):
    DEFAULT.at_distance(0)


def test_chance_and_baseline():
  assert DEFAULT.chance_accuracy == 1 / 26 and DEFAULT.vocab_size == 28
  assert DEFAULT.eval_constants() == {"memoryless_baseline_loss": math.log(26)}


BAD = [
    (dict(num_symbols=1), "num_symbols", 1),
    (dict(min_length=0), "min_length", 0),
    (dict(min_length=10, max_length=9), "max_length", 9),
    (dict(max_length="32"), "max_length", "32"),
]


@pytest.mark.parametrize("fields,name,value", BAD, ids=[f"{n}={v}" for _, n, v in BAD])
def test_bad_settings_raise(fields, name, value):
  with pytest.raises(ValueError) as info:
    tasks.LongCopySettings(**fields)
  assert f"task.{name}={value!r}" in str(info.value)
