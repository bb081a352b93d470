"""Tests of the synthetic tasks: determinism, targets by construction, masks, statistics."""

from __future__ import annotations

import collections
import functools
import hashlib
import math

import jax
import numpy as np
import pytest

from seqresearch import tasks
from seqresearch.tasks import agreement
from seqresearch.tasks import copy as copy_task

# Every batch goes through the dispatcher, jitted with settings and batch size static, as the
# runner will call it; the counter records how often each (settings, batch_size) is traced.
_TRACES: collections.Counter = collections.Counter()


def _counted_make_batch(key, settings, batch_size):
  _TRACES[(settings, batch_size)] += 1
  return tasks.make_batch(key, settings, batch_size)


_make_batch_jit = jax.jit(_counted_make_batch, static_argnums=(1, 2))


@functools.lru_cache(maxsize=None)
def _batch(settings, batch_size: int, seed: int = 0) -> tasks.Batch:
  """A batch as numpy arrays; cached so each (settings, size, seed) is generated once."""
  batch = _make_batch_jit(jax.random.key(seed), settings, batch_size)
  return jax.tree.map(np.asarray, batch)


COPY_STD = tasks.CopySettings()  # K=8, L=10, T=100
COPY_VAR = tasks.CopySettings(num_symbols=5, copy_length=4, min_delay=3, max_delay=12)
AGR_DEFAULT = tasks.AgreementSettings()
AGR_NATURAL = tasks.AgreementSettings(mode="natural")
AGR_FIXED = tasks.AgreementSettings(min_distance=13, max_distance=13)
AGR_SMALL = tasks.AgreementSettings(
    min_distance=7, max_distance=9, min_nouns=0, max_nouns=2, max_attractors=2, max_prefix=2,
    num_nouns=3, num_verbs=2, num_preps=1, num_adjs=1, num_advs=1)
LARGE = 8192  # Only the statistical tests need this many; structural ones use a slice.
SMALL = 512

ALL_SETTINGS = [
    pytest.param(COPY_STD, 64, id="copy_std"),
    pytest.param(COPY_VAR, 256, id="copy_var"),
    pytest.param(AGR_DEFAULT, LARGE, id="agreement_default"),
    pytest.param(AGR_SMALL, SMALL, id="agreement_small", marks=pytest.mark.slow),  # 7 CPU-s
]
COPY_CASES = ALL_SETTINGS[:2]


# ---------------------------------------------------------------------------------------------
# Common contract.


def test_settings_table_and_dispatch():
  assert set(tasks.SETTINGS) == {
      "copy", "agreement", "mqar", "selective_copy", "induction", "long_copy",
      "adding"}
  with pytest.raises(TypeError, match="unknown task settings"):
    tasks.make_batch(jax.random.key(0), object(), 4)


# Agreement's case in the slow suite: its generator takes 12-16 CPU-s to compile (the other
# agreement tests here cover it by default).
@pytest.mark.parametrize("name", [n if n != "agreement" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(tasks.SETTINGS)])
def test_every_task_has_the_whole_interface(name):
  """The common contract, checked on each task's defaults (short ones: a few examples)."""
  settings = tasks.SETTINGS[name]()
  low, high = settings.trained_distances
  assert 1 <= low <= high <= settings.max_distance
  assert 0 < settings.chance_accuracy < 1
  assert isinstance(settings.eval_constants(), dict)
  batch = jax.tree.map(np.asarray, tasks.make_batch(jax.random.key(0), settings, 4))
  assert batch.inputs.shape == (4, settings.seq_len)
  assert batch.inputs.max() < settings.vocab_size and batch.targets.max() < settings.vocab_size
  scored = batch.distance[batch.weights > 0]
  assert np.all((scored >= low) & (scored <= high))
  assert np.all(batch.distance[batch.weights == 0] == 0)
  probe = settings.at_distance(high)
  assert probe.trained_distances == (high, high) and type(probe) is type(settings)


@pytest.mark.parametrize("settings,batch_size", ALL_SETTINGS)
def test_shapes_dtypes_and_vocab(settings, batch_size):
  batch = _batch(settings, batch_size)
  shape = (batch_size, settings.seq_len)
  for name in ("inputs", "targets", "weights", "loss_weights", "distance"):
    assert getattr(batch, name).shape == shape, name
  assert batch.inputs.dtype == np.int32 and batch.targets.dtype == np.int32
  assert batch.distance.dtype == np.int32
  assert batch.weights.dtype == np.float32 and batch.loss_weights.dtype == np.float32
  for ids in (batch.inputs, batch.targets):
    assert ids.min() >= 0 and ids.max() < settings.vocab_size
  assert batch.distance.max() <= settings.max_distance
  # Scored positions carry loss.
  assert np.all(batch.loss_weights[batch.weights > 0] == 1)


@pytest.mark.parametrize("settings,batch_size", ALL_SETTINGS)
def test_deterministic_per_key_and_traced_once(settings, batch_size):
  first = _batch(settings, batch_size, seed=0)
  again = jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(0), settings, batch_size))
  jax.tree.map(np.testing.assert_array_equal, first, again)
  other = jax.tree.map(np.asarray, _make_batch_jit(jax.random.key(1), settings, batch_size))
  assert not np.array_equal(first.inputs, other.inputs)
  _make_batch_jit(jax.random.key(2), settings, batch_size)
  assert _TRACES[(settings, batch_size)] == 1


# ---------------------------------------------------------------------------------------------
# Copy task.


def _copy_delays(batch: tasks.Batch, settings: tasks.CopySettings) -> np.ndarray:
  """Per-example delay decoded from the (single) delimiter's position."""
  is_delim = batch.inputs == settings.delimiter
  assert np.all(is_delim.sum(axis=1) == 1)
  return np.argmax(is_delim, axis=1) - settings.copy_length + 1


@pytest.mark.parametrize("settings,batch_size", COPY_CASES)
def test_copy_recall_targets_equal_input_symbols(settings, batch_size):
  batch = _batch(settings, batch_size)
  length = settings.copy_length
  for b, delay in enumerate(_copy_delays(batch, settings)):
    inputs, targets = batch.inputs[b], batch.targets[b]
    symbols = inputs[:length]
    assert np.all((symbols >= 1) & (symbols <= settings.num_symbols))
    np.testing.assert_array_equal(targets[delay + length:delay + 2 * length], symbols)
    # Nothing else: blanks everywhere except the symbols and the delimiter.
    assert np.all(targets[:delay + length] == copy_task.BLANK)
    assert np.all(targets[delay + 2 * length:] == copy_task.BLANK)
    assert np.all(inputs[length:length + delay - 1] == copy_task.BLANK)
    assert np.all(inputs[length + delay:] == copy_task.BLANK)


@pytest.mark.parametrize("settings,batch_size", COPY_CASES)
def test_copy_masks_distance_and_delimiter(settings, batch_size):
  batch = _batch(settings, batch_size)
  length = settings.copy_length
  # The delay read off the loss mask (T + 2L real positions) must put the delimiter at L+T-1.
  delay_B = batch.loss_weights.sum(axis=1).astype(int) - 2 * length
  assert np.all((delay_B >= settings.min_delay) & (delay_B <= settings.max_delay))
  np.testing.assert_array_equal(np.argmax(batch.inputs == settings.delimiter, axis=1),
                                length + delay_B - 1)
  t_1xT = np.arange(settings.seq_len)[None, :]
  recall_BxT = (t_1xT >= (delay_B + length)[:, None]) & (t_1xT < (delay_B + 2 * length)[:, None])
  np.testing.assert_array_equal(batch.weights, recall_BxT.astype(np.float32))
  np.testing.assert_array_equal(
      batch.loss_weights, (t_1xT < (delay_B + 2 * length)[:, None]).astype(np.float32))
  np.testing.assert_array_equal(
      batch.distance, np.where(recall_BxT, (delay_B + length)[:, None], 0))
  assert batch.attractors is None


def test_copy_standard_layout():
  batch = _batch(COPY_STD, 64)
  assert COPY_STD.seq_len == 120 and COPY_STD.vocab_size == 10 and COPY_STD.max_distance == 110
  assert np.all(batch.inputs[:, 109] == COPY_STD.delimiter)  # L + T - 1 = 10 + 100 - 1
  assert np.all(batch.distance[batch.weights > 0] == 110)
  assert np.all(batch.loss_weights == 1)  # fixed delay: no padding


def test_copy_variable_delay_covers_range():
  delays = _copy_delays(_batch(COPY_VAR, 256), COPY_VAR)
  assert set(delays.tolist()) == set(range(COPY_VAR.min_delay, COPY_VAR.max_delay + 1))


def test_copy_memoryless_baseline_standard_value():
  assert round(tasks.memoryless_baseline(COPY_STD), 4) == 0.1733
  assert math.isclose(tasks.memoryless_baseline(COPY_STD), 10 * math.log(8) / 120)


def _memoryless_loss(batch: tasks.Batch, settings: tasks.CopySettings) -> float:
  """Weighted cross-entropy of the predictor that knows the layout but remembers no symbol."""
  num_ex, num_steps = batch.inputs.shape
  delim_B = np.argmax(batch.inputs == settings.delimiter, axis=1)
  t_1xT = np.arange(num_steps)[None, :]
  recall_BxT = (t_1xT > delim_B[:, None]) & (t_1xT <= delim_B[:, None] + settings.copy_length)
  logp_BxTxV = np.full((num_ex, num_steps, settings.vocab_size), -np.inf)
  logp_BxTxV[..., copy_task.BLANK] = 0.0
  uniform = np.full(settings.vocab_size, -np.inf)
  uniform[1:settings.num_symbols + 1] = -math.log(settings.num_symbols)
  logp_BxTxV[recall_BxT] = uniform
  # A proper distribution at every position.
  np.testing.assert_allclose(np.log(np.exp(logp_BxTxV).sum(-1)), 0.0, atol=1e-12)
  logp_BxT = np.take_along_axis(logp_BxTxV, batch.targets[..., None], axis=-1)[..., 0]
  return float(-(batch.loss_weights * logp_BxT).sum() / batch.loss_weights.sum())


def test_copy_memoryless_baseline_matches_predictor_on_batch():
  fixed = tasks.CopySettings(num_symbols=5, copy_length=4, min_delay=9, max_delay=9)
  loss = _memoryless_loss(_batch(fixed, 64), fixed)
  assert math.isclose(loss, tasks.memoryless_baseline(fixed), rel_tol=1e-6)
  assert math.isclose(loss, 4 * math.log(5) / (9 + 8), rel_tol=1e-6)
  # Variable delay: exactly L·ln K per example over the real positions of this batch, and the
  # large-batch limit L·ln K / (mean_delay + 2L) that memoryless_baseline documents.
  batch = _batch(COPY_VAR, LARGE)
  loss = _memoryless_loss(batch, COPY_VAR)
  length, k = COPY_VAR.copy_length, COPY_VAR.num_symbols
  assert math.isclose(loss, LARGE * length * math.log(k) / batch.loss_weights.sum(),
                      rel_tol=1e-6)
  assert math.isclose(loss, tasks.memoryless_baseline(COPY_VAR), rel_tol=0.02)


# ---------------------------------------------------------------------------------------------
# Agreement task.


def _decode(inputs_T: np.ndarray, settings: tasks.AgreementSettings) -> dict:
  """Reads one example's structure back from its tokens alone."""
  is_noun, is_plural = map(np.asarray, agreement.noun_number(inputs_T, settings))
  is_verb, verb_plural = map(np.asarray, agreement.verb_number(inputs_T, settings))
  (query,) = np.flatnonzero(inputs_T == agreement.QUERY)
  nouns = np.flatnonzero(is_noun)
  subject = nouns[0]
  intervening = nouns[1:]
  assert np.all(intervening < query)
  return dict(subject=subject, query=query, intervening=intervening,
              subject_plural=bool(is_plural[subject]),
              intervening_plural=is_plural[intervening], is_noun=is_noun, is_plural=is_plural,
              is_verb=is_verb, verb_plural=verb_plural)


AGR_CASES = [
    pytest.param(AGR_DEFAULT, LARGE, id="default"),
    pytest.param(AGR_NATURAL, LARGE, id="natural"),
    pytest.param(AGR_FIXED, SMALL, id="fixed_distance"),
    pytest.param(AGR_SMALL, SMALL, id="small_with_zero_nouns"),
]


@pytest.mark.parametrize("settings,batch_size", AGR_CASES)
def test_agreement_targets_distance_attractors_and_masks(settings, batch_size):
  batch = _batch(settings, batch_size)
  for b in range(SMALL):
    ex = _decode(batch.inputs[b], settings)
    query, subject = ex["query"], ex["subject"]
    expected = np.zeros(settings.seq_len, np.float32)
    expected[query] = 1.0
    np.testing.assert_array_equal(batch.weights[b], expected)
    np.testing.assert_array_equal(batch.loss_weights[b], expected)
    label = agreement.PL if ex["subject_plural"] else agreement.SG
    assert batch.targets[b, query] == label
    assert np.all(np.delete(batch.targets[b], query) == agreement.PAD)
    distance = query - subject
    assert settings.min_distance <= distance <= settings.max_distance
    assert batch.distance[b, query] == distance
    assert np.all(np.delete(batch.distance[b], query) == 0)
    num_nouns = len(ex["intervening"])
    assert settings.min_nouns <= num_nouns <= settings.max_nouns
    num_attractors = int(np.sum(ex["intervening_plural"] != ex["subject_plural"]))
    assert batch.attractors[b] == num_attractors
    assert settings.min_attractors <= num_attractors <= min(settings.max_attractors, num_nouns)
  assert batch.attractors.shape == (batch_size,) and batch.attractors.dtype == np.int32
  if settings.min_distance == settings.max_distance:
    assert np.all(batch.distance[batch.weights > 0] == settings.min_distance)


@pytest.mark.parametrize("settings,batch_size", AGR_CASES)
def test_agreement_grammar(settings, batch_size):
  """Adverb prefix, one noun per modifier, RC verbs agree with their own noun, PAD after."""
  batch = _batch(settings, batch_size)
  vocab = settings.vocab
  for b in range(SMALL):
    tokens = batch.inputs[b]
    ex = _decode(tokens, settings)
    subject, query = ex["subject"], ex["query"]
    prefix = tokens[:subject]
    assert np.all((prefix >= vocab.adv_start) & (prefix < vocab.noun_start))
    assert np.all(tokens[query + 1:] == agreement.PAD)
    span = tokens[subject + 1:query]
    is_prep = (span >= vocab.prep_start) & (span < vocab.adj_start)
    is_adj = (span >= vocab.adj_start) & (span < vocab.adv_start)
    is_that = span == agreement.THAT
    is_noun = ex["is_noun"][subject + 1:query]
    is_verb = ex["is_verb"][subject + 1:query]
    assert np.all(is_prep | is_adj | is_that | is_noun | is_verb)
    # Each modifier opens with PREP or THAT right before its single noun.
    openers = np.flatnonzero(is_prep | is_that)
    assert len(openers) == is_noun.sum()
    assert np.all(is_noun[openers + 1])
    # A relative clause closes with a verb agreeing with its noun; verbs appear nowhere else.
    rc_verbs = np.flatnonzero(is_that) + 2
    np.testing.assert_array_equal(np.flatnonzero(is_verb), rc_verbs)
    np.testing.assert_array_equal(ex["verb_plural"][subject + 1:query][rc_verbs],
                                  ex["is_plural"][subject + 1:query][rc_verbs - 1])


def test_agreement_covers_positions_and_distances():
  batch = _batch(AGR_DEFAULT, LARGE)
  subjects = np.argmax(np.asarray(agreement.noun_number(batch.inputs, AGR_DEFAULT)[0]), axis=1)
  assert set(subjects.tolist()) == set(range(AGR_DEFAULT.max_prefix + 1))
  distances = batch.distance.max(axis=1)
  assert set(distances.tolist()) == set(
      range(AGR_DEFAULT.min_distance, AGR_DEFAULT.max_distance + 1))


def _heuristic_accuracies(batch: tasks.Batch, settings: tasks.AgreementSettings) -> dict:
  """Accuracy of shallow cues that never look at the subject."""
  num_ex = batch.inputs.shape[0]
  is_noun_BxT, plural_BxT = map(np.asarray, agreement.noun_number(batch.inputs, settings))
  t_BxT = np.broadcast_to(np.arange(settings.seq_len), is_noun_BxT.shape)
  subject_B = np.argmax(is_noun_BxT, axis=1)
  intervening_BxT = is_noun_BxT & (t_BxT > subject_B[:, None])
  assert intervening_BxT.any(axis=1).all()  # every example has a last noun
  last_B = np.max(np.where(intervening_BxT, t_BxT, -1), axis=1)
  first_B = np.argmax(intervening_BxT, axis=1)
  rows = np.arange(num_ex)
  num_plural_B = (intervening_BxT & plural_BxT).sum(axis=1)
  num_singular_B = (intervening_BxT & ~plural_BxT).sum(axis=1)
  predictions = {
      "last_noun": plural_BxT[rows, last_B],
      "first_intervening_noun": plural_BxT[rows, first_B],
      "majority": num_plural_B > num_singular_B,  # ties: singular
  }
  truth_B = batch.targets[rows, batch.weights.argmax(axis=1)] == agreement.PL
  accuracies = {}
  for name, plural_B in predictions.items():
    accuracies[name] = float(np.mean(plural_B == truth_B))
    accuracies["not_" + name] = float(np.mean(plural_B != truth_B))
  return accuracies


def test_agreement_balanced_mode_defeats_shortcuts():
  accuracies = _heuristic_accuracies(_batch(AGR_DEFAULT, LARGE), AGR_DEFAULT)
  for name, accuracy in accuracies.items():
    assert accuracy <= 0.55, (name, accuracy)


def test_agreement_natural_mode_rewards_shortcuts():
  # The same cues must work where attractors are rare, or the test above could not fail.
  accuracies = _heuristic_accuracies(_batch(AGR_NATURAL, LARGE), AGR_NATURAL)
  assert accuracies["last_noun"] > 0.8, accuracies
  assert accuracies["majority"] > 0.8, accuracies
  attractors = _batch(AGR_NATURAL, LARGE).attractors
  assert np.mean(attractors == 0) > 0.7


def test_agreement_balanced_intervening_nouns_independent_of_subject():
  """Given m, the number of plural intervening nouns has the same law for either subject.

  This subsumes every cue computed from the intervening nouns' numbers (last, first,
  majority, counts): none can carry information about the subject's number.
  """
  batch = _batch(AGR_DEFAULT, LARGE)
  is_noun_BxT, plural_BxT = map(np.asarray, agreement.noun_number(batch.inputs, AGR_DEFAULT))
  subject_B = np.argmax(is_noun_BxT, axis=1)
  rows = np.arange(LARGE)
  subject_plural_B = plural_BxT[rows, subject_B]
  num_nouns_B = is_noun_BxT.sum(axis=1) - 1
  num_plural_B = plural_BxT.sum(axis=1) - subject_plural_B
  for m in range(AGR_DEFAULT.min_nouns, AGR_DEFAULT.max_nouns + 1):
    hists = [np.bincount(num_plural_B[(num_nouns_B == m) & (subject_plural_B == plural)],
                         minlength=m + 1) for plural in (False, True)]
    hists = [h / h.sum() for h in hists]
    np.testing.assert_allclose(hists[0], hists[1], atol=0.06)


def test_agreement_balanced_attractor_counts_uniform_given_nouns():
  batch = _batch(AGR_DEFAULT, LARGE)
  num_nouns_B = np.asarray(agreement.noun_number(batch.inputs, AGR_DEFAULT)[0]).sum(axis=1) - 1
  for m in range(AGR_DEFAULT.min_nouns, AGR_DEFAULT.max_nouns + 1):
    # m is uniform over its range...
    assert abs(np.mean(num_nouns_B == m) - 1 / 3) < 0.03
    # ...and given m, every count 0..m is equally likely.
    counts = np.bincount(batch.attractors[num_nouns_B == m], minlength=m + 1)
    assert len(counts) == m + 1
    np.testing.assert_allclose(counts / counts.sum(), 1 / (m + 1), atol=0.04)


def test_agreement_zero_nouns_is_a_pure_distance_task():
  settings = tasks.AgreementSettings(min_distance=2, max_distance=5, min_nouns=0, max_nouns=0,
                                     max_attractors=0)
  batch = _batch(settings, 64)
  assert np.all(batch.attractors == 0)
  is_noun = np.asarray(agreement.noun_number(batch.inputs, settings)[0])
  assert np.all(is_noun.sum(axis=1) == 1)
  assert set(batch.distance.max(axis=1).tolist()) == {2, 3, 4, 5}


# ---------------------------------------------------------------------------------------------
# Validation: bad settings fail before anything is compiled, naming field and value.

BAD_SETTINGS = [
    (tasks.CopySettings, dict(num_symbols=1), "num_symbols", 1),
    (tasks.CopySettings, dict(copy_length=0), "copy_length", 0),
    (tasks.CopySettings, dict(min_delay=0), "min_delay", 0),
    (tasks.CopySettings, dict(min_delay=10, max_delay=5), "max_delay", 5),
    (tasks.CopySettings, dict(num_symbols=2.5), "num_symbols", 2.5),
    (tasks.AgreementSettings, dict(min_distance=1), "min_distance", 1),
    (tasks.AgreementSettings, dict(min_distance=12, max_distance=11), "max_distance", 11),
    (tasks.AgreementSettings, dict(min_nouns=-1), "min_nouns", -1),
    (tasks.AgreementSettings, dict(min_nouns=2, max_nouns=1), "max_nouns", 1),
    (tasks.AgreementSettings, dict(min_distance=4, max_distance=16), "min_distance", 4),
    (tasks.AgreementSettings, dict(min_attractors=2), "min_attractors", 2),
    (tasks.AgreementSettings, dict(min_attractors=-1), "min_attractors", -1),
    (tasks.AgreementSettings, dict(min_attractors=1, max_attractors=0), "max_attractors", 0),
    (tasks.AgreementSettings, dict(mode="random"), "mode", "random"),
    (tasks.AgreementSettings, dict(attractor_prob=1.5), "attractor_prob", 1.5),
    (tasks.AgreementSettings, dict(attractor_prob=-0.1), "attractor_prob", -0.1),
    (tasks.AgreementSettings, dict(mode="natural", attractor_prob=0.0, min_attractors=1),
     "attractor_prob", 0.0),
    (tasks.AgreementSettings, dict(mode="natural", attractor_prob=1.0, max_attractors=2),
     "attractor_prob", 1.0),
    (tasks.AgreementSettings, dict(max_prefix=-1), "max_prefix", -1),
    (tasks.AgreementSettings, dict(num_nouns=0), "num_nouns", 0),
    (tasks.AgreementSettings, dict(num_verbs=0), "num_verbs", 0),
    (tasks.AgreementSettings, dict(num_preps=0), "num_preps", 0),
    (tasks.AgreementSettings, dict(num_adjs=0), "num_adjs", 0),
    (tasks.AgreementSettings, dict(num_advs=0), "num_advs", 0),
]


@pytest.mark.parametrize("cls,fields,name,value", BAD_SETTINGS,
                         ids=[f"{c.__name__}-{n}={v}" for c, _, n, v in BAD_SETTINGS])
def test_bad_settings_raise(cls, fields, name, value):
  with pytest.raises(ValueError) as info:
    cls(**fields)
  assert f"task.{name}={value!r}" in str(info.value)


def test_too_short_distance_message_explains_why():
  with pytest.raises(ValueError, match="relative clause"):
    tasks.AgreementSettings(min_distance=4, max_distance=16)


# ---------------------------------------------------------------------------------------------
# Golden batches: every task's default batch for one key, as a digest of its arrays.

GOLDEN_BATCH_DIGESTS = {
    "copy": "8d31e7b8c2054b10", "agreement": "4b3fc365390bcae0", "mqar": "e6859fb5083d7bec",
    "selective_copy": "5d3773402b912308", "induction": "e53f043b3e53e378",
    "long_copy": "657180eb8efbbcaa", "adding": "c900a80133393072",
}


def _digest(batch: tasks.Batch) -> str:
  """sha256 (16 hex digits) of every field's name, dtype, shape and bytes (None included)."""
  h = hashlib.sha256()
  for name, value in sorted(vars(batch).items()):
    h.update(name.encode())
    if value is None:
      h.update(b"None")
    else:
      array = np.asarray(value)
      h.update(f"{array.dtype}{array.shape}".encode())
      h.update(array.tobytes())
  return h.hexdigest()[:16]


@pytest.mark.parametrize("name", [n if n != "agreement" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(tasks.SETTINGS)])  # (see above)
def test_default_batch_is_golden(name):
  digest = _digest(tasks.make_batch(jax.random.key(0), tasks.SETTINGS[name](), 4))
  assert digest == GOLDEN_BATCH_DIGESTS[name], (
      f"{name}: the batch of key 0 changed. A refactor must keep every batch bit-identical "
      "(resume, seeds and published numbers depend on it): find the change in the generator. "
      "If the change is meant (a new layout, or a JAX version whose PRNG draws differ), say so "
      f"in the commit and set GOLDEN_BATCH_DIGESTS[{name!r}] = {digest!r}.")


@pytest.mark.parametrize("name", sorted(tasks.SETTINGS))
def test_max_distance_is_the_longest_trained_distance(name):
  for settings in (tasks.SETTINGS[name](), tasks.SETTINGS[name]().at_distance(30)):
    assert settings.max_distance == settings.trained_distances[1]
