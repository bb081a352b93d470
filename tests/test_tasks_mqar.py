"""MQAR generator: determinism, targets against a plain-Python reference, disjoint vocabularies,
masks, distances, and that no shortcut without key-value association beats chance."""

from __future__ import annotations

import collections
import functools

import jax
import numpy as np
import pytest

from seqresearch import tasks
from seqresearch.tasks import mqar

_TRACES: collections.Counter = collections.Counter()


def _counted(key, settings, batch_size):
  _TRACES[(settings, batch_size)] += 1
  return tasks.make_batch(key, settings, batch_size)


_make_batch_jit = jax.jit(_counted, static_argnums=(1, 2))


@functools.lru_cache(maxsize=None)
def _batch(settings, batch_size: int, seed: int = 0) -> tasks.Batch:
  return jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(seed), settings, batch_size))


DEFAULT = tasks.MQARSettings()  # K=8, length 64
FILLERS = tasks.MQARSettings(num_pairs=4, length=20, num_keys=6, num_values=5, num_fillers=3)
FIXED = tasks.MQARSettings(num_pairs=4, length=30, fixed_distance=9)
CASES = [pytest.param(DEFAULT, 2048, id="default"), pytest.param(FILLERS, 256, id="fillers"),
         pytest.param(FIXED, 64, id="fixed_distance")]


def _reference(inputs_T: np.ndarray, settings: tasks.MQARSettings):
  """Targets, weights and distances of one example, from its tokens by the task's definition."""
  k = settings.num_pairs
  value_pos = {int(inputs_T[2 * i]): 2 * i + 1 for i in range(k)}
  targets, weights, distance = (np.zeros(len(inputs_T), dt) for dt in (np.int32, np.float32,
                                                                       np.int32))
  for t in range(2 * k, len(inputs_T)):
    if int(inputs_T[t]) in value_pos:
      source = value_pos[int(inputs_T[t])]
      targets[t], weights[t], distance[t] = inputs_T[source], 1.0, t - source
  return targets, weights, distance


@pytest.mark.parametrize("settings,batch_size", CASES)
def test_targets_masks_and_distances_match_reference(settings, batch_size):
  batch = _batch(settings, batch_size)
  shape = (batch_size, settings.seq_len)
  assert batch.inputs.shape == shape and batch.inputs.dtype == np.int32
  assert batch.inputs.min() >= 0 and batch.inputs.max() < settings.vocab_size
  for b in range(min(batch_size, 200)):
    targets, weights, distance = _reference(batch.inputs[b], settings)
    np.testing.assert_array_equal(batch.targets[b], targets)
    np.testing.assert_array_equal(batch.weights[b], weights)
    np.testing.assert_array_equal(batch.distance[b], distance)
  np.testing.assert_array_equal(batch.loss_weights, batch.weights)
  assert np.all(batch.weights.sum(axis=1) == settings.num_pairs)  # every key queried once
  assert batch.distance.max() <= settings.max_distance and batch.attractors is None


@pytest.mark.parametrize("settings,batch_size", CASES)
def test_vocabulary_ranges_are_disjoint(settings, batch_size):
  batch = _batch(settings, batch_size)
  k = settings.num_pairs
  is_key = (batch.inputs >= settings.key_start) & (batch.inputs < settings.value_start)
  is_value = (batch.inputs >= settings.value_start) & (batch.inputs < settings.filler_start)
  # Context: key, value, key, value ...; keys and values distinct within an example.
  assert np.all(is_key[:, 0:2 * k:2]) and np.all(is_value[:, 1:2 * k:2])
  for row in batch.inputs[:, :2 * k]:
    assert len(set(row.tolist())) == 2 * k
  # After the context: keys only at the scored positions, never a value.
  assert not is_value[:, 2 * k:].any()
  np.testing.assert_array_equal(is_key[:, 2 * k:], batch.weights[:, 2 * k:] > 0)
  fill = batch.inputs[:, 2 * k:][batch.weights[:, 2 * k:] == 0]
  if settings.num_fillers:
    assert fill.min() >= settings.filler_start and len(set(fill.tolist())) == settings.num_fillers
  else:
    assert np.all(fill == mqar.BLANK)


def test_deterministic_per_key_and_traced_once():
  first = _batch(FILLERS, 256)
  again = jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(0), FILLERS, 256))
  jax.tree.map(np.testing.assert_array_equal, first, again)
  other = jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(1), FILLERS, 256))
  assert not np.array_equal(first.inputs, other.inputs)
  assert _TRACES[(FILLERS, 256)] == 1


def test_random_layout_covers_every_distance():
  batch = _batch(DEFAULT, 2048)
  scored = batch.distance[batch.weights > 0]
  assert set(scored.tolist()) == set(range(1, DEFAULT.length - 1))
  assert DEFAULT.trained_distances == (1, DEFAULT.length - 2) == (1, DEFAULT.max_distance)


def test_at_distance_fixes_every_query_and_grows_the_sequence():
  probe = DEFAULT.at_distance(100)
  assert probe.length == 100 + 2 * DEFAULT.num_pairs and probe.max_distance == 100
  batch = _batch(probe, 32)
  np.testing.assert_array_equal(batch.distance[batch.weights > 0], 100)
  assert DEFAULT.at_distance(20).length == DEFAULT.length
  with pytest.raises(ValueError, match="distances must be integers >= 15"):
    DEFAULT.at_distance(14)


def _heuristic_accuracies(batch: tasks.Batch, settings: tasks.MQARSettings) -> dict:
  """Accuracy of cues that use no key-value association, and of the lookup that does."""
  k = settings.num_pairs
  rows, cols = np.nonzero(batch.weights)  # row-major: each example's queries in time order
  truth = batch.targets[rows, cols]
  order = np.concatenate([np.arange(k)] * (len(rows) // k))  # j-th query of its example
  values = batch.inputs[:, 1:2 * k:2]
  keys = batch.inputs[:, 0:2 * k:2]
  lookup = values[rows, np.argmax(keys[rows] == batch.inputs[rows, cols][:, None], axis=1)]
  predictions = {
      "last_value": values[rows, k - 1],
      "first_value": values[rows, 0],
      "value_in_query_order": values[rows, order],
      "token_before_query": batch.inputs[rows, cols - 1],
      "value_two_before_query": batch.inputs[rows, np.maximum(cols - 2, 1)],
      "lookup": lookup,
  }
  return {name: float(np.mean(p == truth)) for name, p in predictions.items()}


def test_no_shortcut_beats_chance():
  accuracies = _heuristic_accuracies(_batch(DEFAULT, 2048), DEFAULT)
  assert accuracies.pop("lookup") == 1.0  # the associative lookup solves it
  for name, accuracy in accuracies.items():
    assert accuracy <= DEFAULT.chance_accuracy + 0.02, (name, accuracy)


def test_fixed_distance_is_solved_by_a_positional_shift():
  # Why at_distance is a probe: at one fixed distance a model can copy the token d steps back.
  batch = _batch(FIXED, 64)
  rows, cols = np.nonzero(batch.weights)
  np.testing.assert_array_equal(batch.inputs[rows, cols - 9], batch.targets[rows, cols])


def test_chance_levels():
  assert DEFAULT.chance_accuracy == 1 / 8
  assert DEFAULT.eval_constants() == {"chance_accuracy": 1 / 8,
                                      "chance_accuracy_any_value": 1 / 64}
  assert DEFAULT.vocab_size == 1 + 64 + 64 and FILLERS.vocab_size == 1 + 6 + 5 + 3


BAD = [
    (dict(num_pairs=0), "num_pairs", 0),
    (dict(num_pairs=2.0), "num_pairs", 2.0),
    (dict(num_pairs=8, length=23), "length", 23),
    (dict(num_pairs=8, num_keys=7), "num_keys", 7),
    (dict(num_pairs=8, num_values=4), "num_values", 4),
    (dict(num_fillers=-1), "num_fillers", -1),
    (dict(fixed_distance=14), "fixed_distance", 14),
    (dict(fixed_distance=49), "fixed_distance", 49),
    (dict(fixed_distance=True), "fixed_distance", True),
    (dict(fixed_distance=-1), "fixed_distance", -1),
]


@pytest.mark.parametrize("fields,name,value", BAD, ids=[f"{n}={v}" for _, n, v in BAD])
def test_bad_settings_raise(fields, name, value):
  with pytest.raises(ValueError) as info:
    tasks.MQARSettings(**fields)
  assert f"task.{name}={value!r}" in str(info.value)
