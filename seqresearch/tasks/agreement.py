"""Distant subject-verb agreement in a small synthetic grammar (after Linzen et al. 2016).

One example, with prefix length P and agreement distance d:

  position  0 .. P-1     P         P+1 .. P+d-1                         P+d     rest
  inputs    ADV ...      SUBJECT   m modifiers + ADJ fillers, shuffled  QUERY   PAD
  targets   PAD ...................................................... SG|PL   PAD

The model must emit the subject's number at QUERY (the verb slot). Each modifier holds exactly
one noun: a prepositional phrase [PREP NOUN] or an object relative clause [THAT NOUN VERB],
whose verb agrees with its own noun. Adjectives fill the rest of the d-1 intervening tokens,
interleaved with the modifiers in a uniformly random order. The random prefix moves the
subject, so "look at position 0" is no solution.

Attractors are intervening nouns whose number differs from the subject's. In "balanced" mode
the attractor count a is uniform over the allowed counts and the attractors are a uniformly
random subset of the m intervening nouns; with the default (symmetric) attractor range the
intervening material is then independent of the subject's number, so cues such as "number of
the last noun" or "majority number" score chance. That holds only for a symmetric range
(min_attractors = 0 and max_attractors >= max_nouns): a fixed count such as exactly one
attractor among three nouns makes the majority cue work, so such settings are for evaluating
by attractor count, not for training. "natural" mode makes each noun an attractor
with probability `attractor_prob` (rare, as in natural text), where those cues work well.

Token ids: [PAD, QUERY, SG, PL, THAT | preps | adjs | advs | nouns sg | nouns pl | verbs sg |
verbs pl]; see `vocabulary`.

Legend: B batch, T time (`seq_len`), N noun (modifier) slots, F filler slots, I items = N + F,
K possible attractor counts (0..max_nouns).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, xlogy

from seqresearch.tasks.base import Batch, check_at_least, check_int, check_min_max

PAD = 0
QUERY = 1
SG = 2  # Target label: the subject is singular.
PL = 3  # Target label: the subject is plural.
THAT = 4
MODES = ("balanced", "natural")


@dataclasses.dataclass(frozen=True)
class AgreementSettings:
  """Settings of the agreement task (frozen, so usable as a static jit argument).

  Attributes:
    min_distance: smallest subject-to-verb distance d (>= 2, and long enough for the
      modifiers: min_distance - 1 >= 3 * max_nouns).
    max_distance: largest d; each example draws d uniformly from [min_distance, max_distance].
      Also the task's `max_distance` in the common settings interface (the largest distance
      of a scored position).
    min_nouns: fewest intervening nouns (modifiers) m.
    max_nouns: most intervening nouns; m is uniform in [min_nouns, max_nouns].
    min_attractors: fewest attractors per example (<= min_nouns, so every m allows one count).
    max_attractors: most attractors per example (capped by m in each example).
    mode: 'balanced' (attractor count uniform over the allowed counts) or 'natural' (each
      intervening noun an attractor with probability attractor_prob, conditioned on the
      allowed counts).
    attractor_prob: per-noun attractor probability of 'natural' mode, in [0, 1].
    max_prefix: longest prefix of adverbs before the subject; P is uniform in [0, max_prefix].
    num_nouns: noun lemmas (each in a singular and a plural form).
    num_verbs: verb lemmas (each in a singular and a plural form).
    num_preps: prepositions.
    num_adjs: adjectives (fillers between the modifiers).
    num_advs: adverbs (fillers of the prefix).
  """

  min_distance: int = 10
  max_distance: int = 20
  min_nouns: int = 1
  max_nouns: int = 3
  min_attractors: int = 0
  max_attractors: int = 3
  mode: Literal["balanced", "natural"] = "balanced"
  attractor_prob: float = 0.1
  max_prefix: int = 4
  num_nouns: int = 20
  num_verbs: int = 10
  num_preps: int = 8
  num_adjs: int = 8
  num_advs: int = 8

  def __post_init__(self) -> None:
    check_min_max(self, "min_distance", "max_distance", 2)
    check_min_max(self, "min_nouns", "max_nouns", 0)
    if self.min_distance - 1 < 3 * self.max_nouns:
      raise ValueError(
          f"task.min_distance={self.min_distance}: too short for task.max_nouns="
          f"{self.max_nouns} modifiers; a relative clause [THAT NOUN VERB] takes 3 tokens, so "
          f"min_distance - 1 must be >= 3 * max_nouns (allowed: min_distance >= "
          f"{3 * self.max_nouns + 1}, or max_nouns <= {(self.min_distance - 1) // 3}).")
    check_int("min_attractors", self.min_attractors, 0,
               f"in [0, task.min_nouns={self.min_nouns}] (every example with the fewest "
               f"nouns must be able to hold that many attractors)")
    if self.min_attractors > self.min_nouns:
      raise ValueError(
          f"task.min_attractors={self.min_attractors}: more attractors than the "
          f"task.min_nouns={self.min_nouns} noun slots of the shortest examples "
          f"(allowed: 0 <= min_attractors <= min_nouns).")
    check_int("max_attractors", self.max_attractors, self.min_attractors,
               f">= task.min_attractors={self.min_attractors}")
    if self.mode not in MODES:
      raise ValueError(f"task.mode={self.mode!r}: must be one of {MODES}.")
    prob = self.attractor_prob
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
      raise ValueError(f"task.attractor_prob={prob!r}: must be a number in [0, 1].")
    if self.mode == "natural" and prob == 0 and self.min_attractors > 0:
      raise ValueError(
          f"task.attractor_prob={prob!r}: with task.min_attractors={self.min_attractors} no "
          "allowed count has positive probability (allowed: attractor_prob > 0).")
    if self.mode == "natural" and prob == 1 and self.max_attractors < self.max_nouns:
      raise ValueError(
          f"task.attractor_prob={prob!r}: every noun would be an attractor, but "
          f"task.max_attractors={self.max_attractors} < task.max_nouns={self.max_nouns} "
          "(allowed: attractor_prob < 1).")
    check_at_least(self, max_prefix=0, num_nouns=1, num_verbs=1, num_preps=1, num_adjs=1,
                   num_advs=1)

  @property
  def vocab(self) -> Vocabulary:
    """Token-id layout of this grammar."""
    return vocabulary(self)

  @property
  def vocab_size(self) -> int:
    """Number of token ids (inputs and targets are all below it)."""
    return vocabulary(self).size

  @property
  def seq_len(self) -> int:
    """Length of every batch: longest prefix + subject + max_distance - 1 tokens + query."""
    return self.max_prefix + self.max_distance + 1

  @property
  def trained_distances(self) -> tuple[int, int]:
    """(shortest, longest) subject-verb distance these settings produce."""
    return self.min_distance, self.max_distance

  @property
  def chance_accuracy(self) -> float:
    """Accuracy of guessing the verb's number: 1/2."""
    return 0.5

  def at_distance(self, distance: int) -> AgreementSettings:
    """These settings with every subject-verb distance equal to `distance`.

    Raises:
      ValueError: the distance is too short for the modifiers (or not an integer >= 2).
    """
    try:
      return dataclasses.replace(self, min_distance=distance, max_distance=distance)
    except ValueError as e:
      raise ValueError(f"distance {distance!r}: {e}") from None

  def eval_constants(self) -> dict[str, float]:
    """Reference numbers every eval line carries (none for agreement)."""
    return {}

  def make_batch(self, key: jax.Array, batch_size: int) -> Batch:
    """Draws a batch of agreement examples.

    Pure and jittable with `self` and `batch_size` static (see `tasks.make_batch`).

    Returns:
      Batch with [B, T] fields (T = self.seq_len): target SG/PL at the QUERY position only,
      where weights = loss_weights = 1 and distance = d; attractors [B] int32 = a.
    """
    keys_B = jax.random.split(key, batch_size)
    inputs_BxT, plural_B, distance_B, prefix_B, attractors_B = jax.vmap(
        lambda k: _example(k, self))(keys_B)
    query_B = prefix_B + distance_B
    is_query_BxT = jnp.arange(self.seq_len)[None, :] == query_B[:, None]
    label_B = jnp.where(plural_B, PL, SG)
    return Batch(
        inputs=inputs_BxT,
        targets=jnp.where(is_query_BxT, label_B[:, None], PAD).astype(jnp.int32),
        weights=is_query_BxT.astype(jnp.float32),
        loss_weights=is_query_BxT.astype(jnp.float32),
        distance=jnp.where(is_query_BxT, distance_B[:, None], 0).astype(jnp.int32),
        attractors=attractors_B)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Token-id layout: PAD, QUERY, SG, PL, THAT, then one contiguous range per word class.

  Attributes:
    prep_start: first preposition id.
    adj_start: first adjective id.
    adv_start: first adverb id.
    noun_start: first noun id; singular nouns come first, then their plurals.
    verb_start: first verb id; singular verbs first, then plurals.
    size: vocabulary size.
    num_nouns: noun lemmas.
    num_verbs: verb lemmas.
  """

  prep_start: int
  adj_start: int
  adv_start: int
  noun_start: int
  verb_start: int
  size: int
  num_nouns: int
  num_verbs: int


def vocabulary(settings: AgreementSettings) -> Vocabulary:
  """Returns the token-id layout of `settings`' grammar."""
  prep_start = THAT + 1
  adj_start = prep_start + settings.num_preps
  adv_start = adj_start + settings.num_adjs
  noun_start = adv_start + settings.num_advs
  verb_start = noun_start + 2 * settings.num_nouns
  return Vocabulary(
      prep_start=prep_start, adj_start=adj_start, adv_start=adv_start,
      noun_start=noun_start, verb_start=verb_start,
      size=verb_start + 2 * settings.num_verbs,
      num_nouns=settings.num_nouns, num_verbs=settings.num_verbs)


def _inflected(token_ids: jax.Array, start: int, num_lemmas: int
               ) -> tuple[jax.Array, jax.Array]:
  """(is in the block [start, start + 2*num_lemmas), is in its plural half)."""
  offset = jnp.asarray(token_ids) - start
  inside = (offset >= 0) & (offset < 2 * num_lemmas)
  return inside, inside & (offset >= num_lemmas)


def noun_number(token_ids: jax.Array, settings: AgreementSettings) -> tuple[jax.Array, jax.Array]:
  """Which tokens are nouns, and which of those are plural.

  Args:
    token_ids: int array of any shape.
    settings: the task settings (they fix the token layout).

  Returns:
    (is_noun, is_plural): bool arrays shaped like `token_ids`; is_plural is False at non-nouns.
  """
  vocab = vocabulary(settings)
  return _inflected(token_ids, vocab.noun_start, vocab.num_nouns)


def verb_number(token_ids: jax.Array, settings: AgreementSettings) -> tuple[jax.Array, jax.Array]:
  """Which tokens are (relative-clause) verbs, and which of those are plural.

  Args:
    token_ids: int array of any shape.
    settings: the task settings.

  Returns:
    (is_verb, is_plural): bool arrays shaped like `token_ids`; is_plural is False at non-verbs.
  """
  vocab = vocabulary(settings)
  return _inflected(token_ids, vocab.verb_start, vocab.num_verbs)


def _attractor_count(key: jax.Array, num_nouns: jax.Array,
                     settings: AgreementSettings) -> jax.Array:
  """Draws the attractor count a for an example with `num_nouns` intervening nouns m."""
  k_K = jnp.arange(settings.max_nouns + 1)
  allowed_K = (k_K >= settings.min_attractors) & (
      k_K <= jnp.minimum(settings.max_attractors, num_nouns))
  if settings.mode == "balanced":
    logits_K = jnp.zeros(k_K.shape, jnp.float32)
  else:
    # Binomial(m, p) log-probabilities; xlogy makes p = 0 or 1 exact. Entries with k > m
    # are garbage but masked below.
    p = settings.attractor_prob
    m = num_nouns.astype(jnp.float32)
    k = k_K.astype(jnp.float32)
    logits_K = (gammaln(m + 1) - gammaln(k + 1) - gammaln(jnp.maximum(m - k, 0) + 1)
                + xlogy(k, p) + xlogy(m - k, 1 - p))
  logits_K = jnp.where(allowed_K, logits_K, -jnp.inf)
  return jax.random.categorical(key, logits_K).astype(jnp.int32)


def _example(key: jax.Array, settings: AgreementSettings) -> tuple[jax.Array, ...]:
  """One example: inputs [T], subject plural (), distance d (), prefix P (), attractors a ()."""
  vocab = vocabulary(settings)
  num_steps = settings.seq_len
  num_slots = max(settings.max_nouns, 1)  # keeps arrays non-empty when max_nouns == 0
  num_fill = settings.max_distance - 1  # enough filler slots for any d and m
  keys = iter(jax.random.split(key, 14))

  subject_plural = jax.random.bernoulli(next(keys))
  distance = jax.random.randint(
      next(keys), (), settings.min_distance, settings.max_distance + 1, dtype=jnp.int32)
  num_nouns = jax.random.randint(
      next(keys), (), settings.min_nouns, settings.max_nouns + 1, dtype=jnp.int32)
  prefix = jax.random.randint(next(keys), (), 0, settings.max_prefix + 1, dtype=jnp.int32)
  num_attractors = _attractor_count(next(keys), num_nouns, settings)

  # A uniformly random subset of size a of the m valid noun slots: rank the valid slots by
  # iid uniforms (invalid slots rank last) and take the a lowest ranks.
  valid_N = jnp.arange(num_slots) < num_nouns
  u_N = jnp.where(valid_N, jax.random.uniform(next(keys), (num_slots,)), jnp.inf)
  rank_N = jnp.argsort(jnp.argsort(u_N))
  attractor_N = rank_N < num_attractors
  plural_N = jnp.logical_xor(subject_plural, attractor_N).astype(jnp.int32)

  is_rc_N = jax.random.bernoulli(next(keys), 0.5, (num_slots,))
  noun_N = (vocab.noun_start + plural_N * vocab.num_nouns
            + jax.random.randint(next(keys), (num_slots,), 0, vocab.num_nouns))
  verb_N = (vocab.verb_start + plural_N * vocab.num_verbs
            + jax.random.randint(next(keys), (num_slots,), 0, vocab.num_verbs))
  prep_N = vocab.prep_start + jax.random.randint(next(keys), (num_slots,), 0, settings.num_preps)
  rc_Nx3 = jnp.stack([jnp.full_like(noun_N, THAT), noun_N, verb_N], axis=-1)
  pp_Nx3 = jnp.stack([prep_N, noun_N, jnp.full_like(noun_N, PAD)], axis=-1)
  modifier_Nx3 = jnp.where(is_rc_N[:, None], rc_Nx3, pp_Nx3)
  modifier_len_N = jnp.where(valid_N, jnp.where(is_rc_N, 3, 2), 0)

  # Adjectives fill the intervening span up to exactly d - 1 tokens (>= 0 by validation).
  num_adjs = distance - 1 - modifier_len_N.sum()
  adj_F = vocab.adj_start + jax.random.randint(next(keys), (num_fill,), 0, settings.num_adjs)
  filler_Fx3 = jnp.stack([adj_F, jnp.zeros_like(adj_F), jnp.zeros_like(adj_F)], axis=-1)
  filler_len_F = (jnp.arange(num_fill) < num_adjs).astype(modifier_len_N.dtype)

  # Shuffle the valid items uniformly (invalid ones sort last with length 0), lay them end to
  # end after the subject, and scatter their tokens; unused token slots go out of range.
  item_Ix3 = jnp.concatenate([modifier_Nx3, filler_Fx3], axis=0)
  item_len_I = jnp.concatenate([modifier_len_N, filler_len_F], axis=0)
  sort_key_I = jnp.where(item_len_I > 0,
                         jax.random.uniform(next(keys), item_len_I.shape), jnp.inf)
  order_I = jnp.argsort(sort_key_I)
  item_Ix3 = item_Ix3[order_I]
  item_len_I = item_len_I[order_I]
  start_I = jnp.cumsum(item_len_I) - item_len_I
  sub_3 = jnp.arange(3)
  pos_Ix3 = prefix + 1 + start_I[:, None] + sub_3[None, :]
  pos_Ix3 = jnp.where(sub_3[None, :] < item_len_I[:, None], pos_Ix3, num_steps)

  t_T = jnp.arange(num_steps)
  adverb_T = vocab.adv_start + jax.random.randint(next(keys), (num_steps,), 0, settings.num_advs)
  inputs_T = jnp.where(t_T < prefix, adverb_T, PAD)
  inputs_T = inputs_T.at[pos_Ix3.reshape(-1)].set(item_Ix3.reshape(-1), mode="drop")
  subject = (vocab.noun_start + subject_plural.astype(jnp.int32) * vocab.num_nouns
             + jax.random.randint(next(keys), (), 0, vocab.num_nouns))
  inputs_T = inputs_T.at[prefix].set(subject)
  inputs_T = inputs_T.at[prefix + distance].set(QUERY)
  return inputs_T.astype(jnp.int32), subject_plural, distance, prefix, num_attractors
