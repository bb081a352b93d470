"""Induction-heads generator: determinism, targets against a plain-Python reference, masks,
distances, balanced symbol counts, length changes, and that no shortcut beats chance."""

from __future__ import annotations

import collections
import functools
import math

import jax
import numpy as np
import pytest

from seqresearch import tasks

_TRACES: collections.Counter = collections.Counter()


def _counted(key, settings, batch_size):
  _TRACES[(settings, batch_size)] += 1
  return tasks.make_batch(key, settings, batch_size)


_make_batch_jit = jax.jit(_counted, static_argnums=(1, 2))


@functools.lru_cache(maxsize=None)
def _batch(settings, batch_size: int, seed: int = 0) -> tasks.Batch:
  return jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(seed), settings, batch_size))


DEFAULT = tasks.InductionSettings()  # A=16, L=64
SMALL = tasks.InductionSettings(num_symbols=3, length=9)
FIXED = tasks.InductionSettings(num_symbols=5, length=30, fixed_distance=11)
CASES = [pytest.param(DEFAULT, 4096, id="default"), pytest.param(SMALL, 512, id="small"),
         pytest.param(FIXED, 64, id="fixed_distance")]


def _reference(inputs_T: np.ndarray, settings: tasks.InductionSettings):
  """Targets, weights and distances of one example, from its tokens by the task's definition."""
  length = len(inputs_T)
  triggers = [t for t in range(length) if inputs_T[t] == settings.trigger]
  assert len(triggers) == 2 and triggers[1] == length - 1
  source = triggers[0] + 1
  targets, weights, distance = (np.zeros(length, dt) for dt in (np.int32, np.float32, np.int32))
  targets[-1], weights[-1], distance[-1] = inputs_T[source], 1.0, length - 1 - source
  return targets, weights, distance


@pytest.mark.parametrize("settings,batch_size", CASES)
def test_targets_masks_and_distances_match_reference(settings, batch_size):
  batch = _batch(settings, batch_size)
  assert batch.inputs.shape == (batch_size, settings.seq_len) and batch.inputs.dtype == np.int32
  assert batch.inputs.min() >= 1 and batch.inputs.max() == settings.trigger  # no BLANK input
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


def test_symbol_counts_balanced_and_distances_uniform():
  batch = _batch(DEFAULT, 4096)
  a, n = DEFAULT.num_symbols, DEFAULT.length - 2
  for row in batch.inputs[:100]:
    counts = np.bincount(row[row != DEFAULT.trigger], minlength=a + 1)[1:]
    assert set(counts.tolist()) <= {n // a, -(-n // a)} and counts.sum() == n
  distances = batch.distance[:, -1]
  assert set(distances.tolist()) == set(range(1, n + 1))
  np.testing.assert_allclose(np.bincount(distances)[1:] / 4096, 1 / n, atol=0.01)
  targets = np.bincount(batch.targets[:, -1], minlength=a + 1)[1:] / 4096
  np.testing.assert_allclose(targets, 1 / a, atol=0.015)


def test_no_shortcut_beats_chance():
  batch = _batch(DEFAULT, 4096)
  truth = batch.targets[:, -1]
  symbols = np.where(batch.inputs == DEFAULT.trigger, 0, batch.inputs)
  counts = np.stack([np.bincount(row, minlength=DEFAULT.vocab_size) for row in symbols])
  counts[:, 0] = -1
  before_trigger = batch.inputs[np.arange(4096), np.argmax(batch.inputs == DEFAULT.trigger, 1) - 1]
  predictions = {
      "previous_token": batch.inputs[:, -2],
      "most_frequent": counts.argmax(axis=1),
      "least_frequent": np.where(counts < 0, 10 ** 6, counts).argmin(axis=1),
      "first_token": batch.inputs[:, 0],
      "token_before_first_trigger": before_trigger,
  }
  first_trigger = np.argmax(batch.inputs == DEFAULT.trigger, axis=1)
  assert np.all(batch.inputs[np.arange(4096), first_trigger + 1] == truth)  # the induction rule
  for name, prediction in predictions.items():
    accuracy = float(np.mean(prediction == truth))
    assert accuracy <= DEFAULT.chance_accuracy + 0.02, (name, accuracy)


def test_iid_symbols_would_make_the_count_shortcut_work():
  # Why the symbols are balanced: with i.i.d. symbols the target's extra occurrence makes it
  # the most frequent symbol far more often than chance (the test above could then fail).
  rng = np.random.default_rng(0)
  a, n = DEFAULT.num_symbols, DEFAULT.length - 2
  symbols = rng.integers(1, a + 1, size=(4096, n))
  truth = symbols[np.arange(4096), rng.integers(0, n, size=4096)]
  mode = np.array([np.bincount(row, minlength=a + 1).argmax() for row in symbols])
  assert np.mean(mode == truth) > DEFAULT.chance_accuracy + 0.05


def test_at_distance_and_at_length():
  probe = DEFAULT.at_distance(500)
  assert probe.length == 502 and probe.trained_distances == (500, 500)
  np.testing.assert_array_equal(_batch(probe, 8).distance[:, -1], 500)
  assert DEFAULT.at_distance(30).length == DEFAULT.length
  longer = FIXED.at_length(16 * FIXED.length)
  assert longer.seq_len == 480 and longer.trained_distances == (1, 478)
  with pytest.raises(ValueError, match="integers >= 1"):
    DEFAULT.at_distance(0)
  with pytest.raises(ValueError, match="task.length=2"):
    DEFAULT.at_length(2)


def test_chance_and_baseline():
  assert DEFAULT.chance_accuracy == 1 / 16 and DEFAULT.vocab_size == 18
  assert DEFAULT.eval_constants() == {"memoryless_baseline_loss": math.log(16)}


BAD = [
    (dict(num_symbols=1), "num_symbols", 1),
    (dict(length=2), "length", 2),
    (dict(length=64.0), "length", 64.0),
    (dict(fixed_distance=-2), "fixed_distance", -2),
    (dict(fixed_distance=63), "fixed_distance", 63),
]


@pytest.mark.parametrize("fields,name,value", BAD, ids=[f"{n}={v}" for _, n, v in BAD])
def test_bad_settings_raise(fields, name, value):
  with pytest.raises(ValueError) as info:
    tasks.InductionSettings(**fields)
  assert f"task.{name}={value!r}" in str(info.value)
