"""Selective copying generator: determinism, targets against a plain-Python reference, masks,
distances, and that no positional shortcut beats chance."""

from __future__ import annotations

import collections
import functools
import math

import jax
import numpy as np
import pytest

from seqresearch import tasks
from seqresearch.tasks import selective_copy

_TRACES: collections.Counter = collections.Counter()


def _counted(key, settings, batch_size):
  _TRACES[(settings, batch_size)] += 1
  return tasks.make_batch(key, settings, batch_size)


_make_batch_jit = jax.jit(_counted, static_argnums=(1, 2))


@functools.lru_cache(maxsize=None)
def _batch(settings, batch_size: int, seed: int = 0) -> tasks.Batch:
  return jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(seed), settings, batch_size))


DEFAULT = tasks.SelectiveCopySettings()  # A=8, M=8, C=64
SMALL = tasks.SelectiveCopySettings(num_symbols=3, copy_length=4, context_len=6)
FIXED = tasks.SelectiveCopySettings(copy_length=4, context_len=20, fixed_distance=9)
CASES = [pytest.param(DEFAULT, 2048, id="default"), pytest.param(SMALL, 512, id="small"),
         pytest.param(FIXED, 64, id="fixed_distance")]


def _reference(inputs_T: np.ndarray, settings: tasks.SelectiveCopySettings):
  """Targets, weights and distances of one example, from its tokens by the task's definition."""
  c, m = settings.context_len, settings.copy_length
  positions = [t for t in range(c) if inputs_T[t] != selective_copy.NOISE]
  assert len(positions) == m and all(inputs_T[c:] == settings.marker)
  targets, weights, distance = (np.zeros(c + m, dt) for dt in (np.int32, np.float32, np.int32))
  for j, p in enumerate(positions):
    targets[c + j], weights[c + j], distance[c + j] = inputs_T[p], 1.0, c + j - p
  return targets, weights, distance


@pytest.mark.parametrize("settings,batch_size", CASES)
def test_targets_masks_and_distances_match_reference(settings, batch_size):
  batch = _batch(settings, batch_size)
  assert batch.inputs.shape == (batch_size, settings.seq_len) and batch.inputs.dtype == np.int32
  context = batch.inputs[:, :settings.context_len]
  assert np.all(context < settings.marker)  # symbols and noise only; markers only after
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


def test_positions_uniform_and_every_distance_reached():
  batch = _batch(DEFAULT, 2048)
  scored = batch.distance[batch.weights > 0]
  low, high = DEFAULT.trained_distances
  assert (low, high) == (8, 64) and set(scored.tolist()) == set(range(low, high + 1))
  # Each context position holds a symbol with probability M/C.
  occupied = (batch.inputs[:, :DEFAULT.context_len] != selective_copy.NOISE).mean(axis=0)
  np.testing.assert_allclose(occupied, 8 / 64, atol=0.03)
  counts = np.bincount(batch.targets[batch.weights > 0], minlength=DEFAULT.vocab_size)
  np.testing.assert_allclose(counts[1:9] / counts.sum(), 1 / 8, atol=0.01)


def test_at_distance_makes_the_plain_copy_task():
  probe = DEFAULT.at_distance(100)
  assert probe.context_len == 100 and probe.trained_distances == (100, 100)
  batch = _batch(probe, 16)
  np.testing.assert_array_equal(batch.distance[batch.weights > 0], 100)
  np.testing.assert_array_equal(batch.inputs[:, 0:8], batch.targets[:, 100:108])
  assert DEFAULT.at_distance(30).context_len == 64
  with pytest.raises(ValueError, match="must be integers >= 8"):
    DEFAULT.at_distance(7)


def test_no_positional_shortcut_beats_chance():
  batch = _batch(DEFAULT, 2048)
  c, m = DEFAULT.context_len, DEFAULT.copy_length
  truth = batch.targets[:, c:]
  context = batch.inputs[:, :c]
  mean_offset = int(round(batch.distance[batch.weights > 0].mean()))
  in_order = np.stack([row[row != 0] for row in context])  # the j-th symbol: the solution
  predictions = {
      "block_before_markers": context[:, c - m:],  # where plain copy would put them
      "block_at_start": context[:, :m],
      "mean_distance_back": batch.inputs[:, c - mean_offset:c - mean_offset + m],
  }
  assert np.mean(in_order == truth) == 1.0
  # Remembering one symbol gets one output in M right: above chance, as it should be.
  assert np.mean(np.repeat(in_order[:, -1:], m, axis=1) == truth) > 1 / m
  for name, prediction in predictions.items():
    accuracy = float(np.mean(prediction == truth))
    assert accuracy <= DEFAULT.chance_accuracy + 0.02, (name, accuracy)


def test_chance_and_baseline():
  assert DEFAULT.chance_accuracy == 1 / 8 and DEFAULT.vocab_size == 10
  assert DEFAULT.eval_constants() == {"memoryless_baseline_loss": math.log(8)}


BAD = [
    (dict(num_symbols=1), "num_symbols", 1),
    (dict(copy_length=0), "copy_length", 0),
    (dict(copy_length=8, context_len=7), "context_len", 7),
    (dict(fixed_distance=-1), "fixed_distance", -1),
    (dict(fixed_distance=7), "fixed_distance", 7),
    (dict(fixed_distance=65), "fixed_distance", 65),
    (dict(context_len="64"), "context_len", "64"),
]


@pytest.mark.parametrize("fields,name,value", BAD, ids=[f"{n}={v}" for _, n, v in BAD])
def test_bad_settings_raise(fields, name, value):
  with pytest.raises(ValueError) as info:
    tasks.SelectiveCopySettings(**fields)
  assert f"task.{name}={value!r}" in str(info.value)
