"""Adding problem: generator against a plain-Python reference, the 0.167 baseline, shortcuts,
and the regression path of `evaluation` (output channel 0, MSE, |error| < 0.04)."""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqresearch import evaluation
from seqresearch import tasks

_TRACES: collections.Counter = collections.Counter()


def _counted(key, settings, batch_size):
  _TRACES[(settings, batch_size)] += 1
  return tasks.make_batch(key, settings, batch_size)


_make_batch_jit = jax.jit(_counted, static_argnums=(1, 2))


@functools.lru_cache(maxsize=None)
def _batch(settings, batch_size: int, seed: int = 0) -> tasks.Batch:
  return jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(seed), settings, batch_size))


DEFAULT = tasks.AddingSettings()  # n=50, 32 levels
ODD = tasks.AddingSettings(length=7, num_levels=3)
FIXED = tasks.AddingSettings(length=20, fixed_distance=13)
CASES = [pytest.param(DEFAULT, 8192, id="default"), pytest.param(ODD, 512, id="odd_length"),
         pytest.param(FIXED, 64, id="fixed_distance")]


def _reference(inputs_T: np.ndarray, settings: tasks.AddingSettings):
  """Regression target, weights and distances of one example, from its tokens."""
  n, levels = len(inputs_T), settings.num_levels
  marked = [t for t in range(n) if inputs_T[t] >= levels]
  assert len(marked) == 2 and marked[0] < n // 2 <= marked[1]
  total = sum((inputs_T[t] - levels + 0.5) / levels for t in marked)
  target, weights, distance = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, int)
  target[-1], weights[-1], distance[-1] = total, 1.0, n - 1 - marked[0]
  return target, weights, distance


@pytest.mark.parametrize("settings,batch_size", CASES)
def test_targets_masks_and_distances_match_reference(settings, batch_size):
  batch = _batch(settings, batch_size)
  assert batch.inputs.shape == (batch_size, settings.seq_len) and batch.inputs.dtype == np.int32
  assert batch.inputs.min() >= 0 and batch.inputs.max() < settings.vocab_size
  assert batch.regression_targets.dtype == np.float32 and np.all(batch.targets == 0)
  for b in range(200 if batch_size > 200 else batch_size):
    target, weights, distance = _reference(batch.inputs[b], settings)
    np.testing.assert_allclose(batch.regression_targets[b], target, rtol=1e-6)
    np.testing.assert_array_equal(batch.weights[b], weights)
    np.testing.assert_array_equal(batch.distance[b], distance)
  np.testing.assert_array_equal(batch.loss_weights, batch.weights)
  low, high = settings.trained_distances
  scored = batch.distance[:, -1]
  assert scored.min() >= low and scored.max() <= high == settings.max_distance


def test_deterministic_per_key_and_traced_once():
  first = _batch(ODD, 512)
  again = jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(0), ODD, 512))
  jax.tree.map(np.testing.assert_array_equal, first, again)
  other = jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(1), ODD, 512))
  assert not np.array_equal(first.inputs, other.inputs)
  assert _TRACES[(ODD, 512)] == 1


def test_markers_uniform_in_their_halves():
  batch = _batch(DEFAULT, 8192)
  assert set(batch.distance[:, -1].tolist()) == set(range(25, 50))
  second = 49 - np.argmax(batch.inputs[:, ::-1] >= DEFAULT.num_levels, axis=1)
  np.testing.assert_allclose(np.bincount(second - 25, minlength=25) / 8192, 1 / 25, atol=0.01)


def _mse_and_accuracy(prediction_B: np.ndarray, batch: tasks.Batch) -> tuple[float, float]:
  error = prediction_B - batch.regression_targets[:, -1]
  return float(np.mean(error ** 2)), float(np.mean(np.abs(error) < 0.04))


def test_answering_one_scores_the_baseline():
  batch = _batch(DEFAULT, 8192)
  mse, accuracy = _mse_and_accuracy(np.ones(8192), batch)
  constants = DEFAULT.eval_constants()
  assert abs(constants["memoryless_baseline_loss"] - 1 / 6) < 1e-3  # 0.1665 with 32 levels
  np.testing.assert_allclose(mse, constants["memoryless_baseline_loss"], rtol=0.04)
  np.testing.assert_allclose(accuracy, DEFAULT.chance_accuracy, atol=0.01)
  assert DEFAULT.chance_accuracy == 94 / 1024  # level sums 30, 31, 32 of 32 x 32


def test_no_shortcut_beats_the_baseline():
  batch = _batch(DEFAULT, 8192)
  levels = DEFAULT.num_levels
  values = (batch.inputs % levels + 0.5) / levels
  marked = batch.inputs >= levels
  predictions = {
      "twice_the_mean": 2 * values.mean(axis=1),
      "last_two_values": values[:, -2:].sum(axis=1),
      "first_and_last": values[:, 0] + values[:, -1],
      "twice_the_last": 2 * values[:, -1],
      "one_half_plus_second_marked": 0.5 + np.where(marked[:, 25:], values[:, 25:], 0).sum(1),
  }
  assert _mse_and_accuracy(np.where(marked, values, 0).sum(axis=1), batch) == (0.0, 1.0)
  baseline = DEFAULT.eval_constants()["memoryless_baseline_loss"]
  for name, prediction in predictions.items():
    mse, accuracy = _mse_and_accuracy(prediction, batch)
    if name == "one_half_plus_second_marked":  # remembering one number halves the error
      assert abs(mse - baseline / 2) < 0.01, (name, mse)
      continue
    assert mse >= baseline - 0.01, (name, mse)
    assert accuracy <= DEFAULT.chance_accuracy + 0.02, (name, accuracy)


def _logits_with_channel0(prediction_B: np.ndarray, settings: tasks.AddingSettings):
  logits = np.random.default_rng(0).normal(size=(len(prediction_B), settings.seq_len,
                                                 settings.vocab_size)).astype(np.float32)
  logits[:, -1, 0] = prediction_B
  return jnp.asarray(logits)


def test_evaluation_reads_channel_zero_as_the_regression_output():
  batch = _batch(DEFAULT, 1024)
  exact = _logits_with_channel0(batch.regression_targets[:, -1], DEFAULT)
  loss, correct, scored = evaluation.loss_and_correct(exact, batch)
  assert float(loss) < 1e-10 and float(correct.sum()) == float(scored) == 1024
  ones = _logits_with_channel0(np.ones(1024), DEFAULT)
  loss, correct, _ = evaluation.loss_and_correct(ones, batch)
  mse, accuracy = _mse_and_accuracy(np.ones(1024), batch)
  np.testing.assert_allclose(float(loss), mse, rtol=1e-5)
  np.testing.assert_allclose(float(correct.sum()) / 1024, accuracy)
  sums = jax.device_get(evaluation.batch_sums(ones, batch, DEFAULT.max_distance + 1))
  metrics = evaluation.summarize(sums, DEFAULT)
  np.testing.assert_allclose(metrics["loss"], mse, rtol=1e-5)
  assert set(metrics["mse_by_distance"]) == set(metrics["accuracy_by_distance"])
  by_distance = batch.distance[:, -1]
  errors = (1 - batch.regression_targets[:, -1]) ** 2
  np.testing.assert_allclose(metrics["mse_by_distance"]["30"],
                             errors[by_distance == 30].mean(), rtol=1e-5)
  assert metrics["memoryless_baseline_loss"] == DEFAULT.eval_constants()[
      "memoryless_baseline_loss"]


def test_regression_loss_has_gradient_only_through_channel_zero():
  batch = _batch(ODD, 512)
  logits = _logits_with_channel0(np.zeros(512), ODD)
  grad = jax.grad(lambda lg: evaluation.loss_and_correct(lg, batch)[0])(logits)
  assert np.all(np.asarray(grad[..., 1:]) == 0) and np.any(np.asarray(grad[:, -1, 0]) != 0)


def test_at_distance_keeps_or_changes_the_length():
  assert DEFAULT.at_distance(30) == tasks.AddingSettings(length=50, fixed_distance=30)
  assert DEFAULT.at_distance(200).length == 201 and DEFAULT.at_distance(10).length == 20
  for d in (1, 10, 30, 200):
    probe = DEFAULT.at_distance(d)
    np.testing.assert_array_equal(_batch(probe, 16).distance[:, -1], d)
  with pytest.raises(ValueError, match="integers >= 1"):
    DEFAULT.at_distance(0)


BAD = [
    (dict(length=1), "length", 1),
    (dict(num_levels=1), "num_levels", 1),
    (dict(fixed_distance=-1), "fixed_distance", -1),
    (dict(fixed_distance=24), "fixed_distance", 24),
    (dict(fixed_distance=50), "fixed_distance", 50),
]


@pytest.mark.parametrize("fields,name,value", BAD, ids=[f"{n}={v}" for _, n, v in BAD])
def test_bad_settings_raise(fields, name, value):
  with pytest.raises(ValueError) as info:
    tasks.AddingSettings(**fields)
  assert f"task.{name}={value!r}" in str(info.value)
