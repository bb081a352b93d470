"""RoPE and ALiBi: their defining properties, every attention implementation against the
reference with them, the returned weights, the config errors, and a few training steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqresearch import models
from seqresearch.models import attention, positional
from seqresearch.models.config import POS_ENCODINGS as ENCODINGS


def _close(a, b, tol=2e-5):
  np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                             rtol=tol, atol=tol)


def _rope_by_complex_numbers(x_BxTxHxK: np.ndarray, positions_T: np.ndarray) -> np.ndarray:
  """RoFormer's rotation written as complex multiplication (Su et al. 2021, eq. 12): the pair
  (x_2i, x_2i+1) is the number x_2i + i x_2i+1, multiplied by exp(i * t * 10000^(-2i/K))."""
  k = x_BxTxHxK.shape[-1]
  z = x_BxTxHxK[..., 0::2] + 1j * x_BxTxHxK[..., 1::2]
  theta = 10000.0 ** (-np.arange(0, k, 2) / k)
  z = z * np.exp(1j * positions_T[None, :, None, None] * theta[None, None, None, :])
  out = np.empty_like(x_BxTxHxK)
  out[..., 0::2], out[..., 1::2] = z.real, z.imag
  return out


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
  return jax.random.normal(jax.random.key(seed), shape)


# ------------------------------------------------------------------------------------ RoPE


def test_rope_is_the_rotation_of_the_paper():
  x = _normal(0, (2, 9, 3, 8))
  positions = np.arange(9) * 3 + 1
  _close(positional.apply_rope(x, positions), _rope_by_complex_numbers(np.asarray(x), positions))
  _close(positional.apply_rope(x, np.zeros(9)), x)  # position 0: no rotation


def test_rope_scores_depend_only_on_the_offset():
  q, k = _normal(1, (1, 12, 2, 6)), _normal(2, (1, 12, 2, 6))
  positions = jnp.arange(12)

  def scores(shift):  # q . k after rotation, every pair (t, s), per head
    rq, rk = (positional.apply_rope(a, positions + shift) for a in (q, k))
    return jnp.einsum("bthk,bshk->bhts", rq, rk)

  base = scores(0)
  for shift in (5, 37, 1000):
    _close(scores(shift), base, 2e-4)
  # Not a trivial invariance: without the rotation, or at scaled positions, the scores differ.
  assert float(jnp.abs(jnp.einsum("bthk,bshk->bhts", q, k) - base).max()) > 0.1
  rq, rk = (positional.apply_rope(a, 2 * positions) for a in (q, k))
  assert float(jnp.abs(jnp.einsum("bthk,bshk->bhts", rq, rk) - base).max()) > 0.1


def test_rope_preserves_norms_and_dtype():
  x = _normal(3, (2, 16, 4, 10))
  rotated = positional.apply_rope(x, jnp.arange(16) * 7)
  _close(jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(x, axis=-1))
  # Each pair keeps its own norm (a rotation per pair, not a mixing of pairs).
  pair_norm = lambda a: jnp.hypot(a[..., 0::2], a[..., 1::2])  # noqa: E731
  _close(pair_norm(rotated), pair_norm(x))
  assert positional.apply_rope(x.astype(jnp.bfloat16), jnp.arange(16)).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="even head dim"):
    positional.apply_rope(_normal(4, (1, 3, 1, 5)), jnp.arange(3))


# ----------------------------------------------------------------------------------- ALiBi


def test_alibi_slopes_follow_the_paper():
  # Press et al. 2022, Sec. 3: H = 8 gives 1/2, 1/4, ..., 1/256.
  _close(positional.alibi_slopes(8), [2.0 ** -i for i in range(1, 9)], 0)
  _close(positional.alibi_slopes(16), [2.0 ** (-i / 2) for i in range(1, 17)], 1e-7)
  # H = 6, not a power of two: the 4 slopes of H = 4 (1/4 .. 1/256), then the 1st and 3rd
  # of the 8 slopes of H = 8 (1/2, 1/8).
  _close(positional.alibi_slopes(6), [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8], 0)
  _close(positional.alibi_slopes(1), [1 / 256], 0)
  assert positional.alibi_slopes(12).shape == (12,)
  assert len(set(positional.alibi_slopes(12).tolist())) == 12


def test_alibi_bias_is_minus_slope_times_distance():
  bias = positional.alibi_bias(jnp.asarray([0.5, 0.25]), jnp.arange(4), jnp.arange(4))
  assert bias.shape == (2, 4, 4) and bias.dtype == jnp.float32
  assert float(bias[0, 3, 0]) == -1.5 and float(bias[1, 3, 1]) == -0.5
  assert float(bias[0, 2, 2]) == 0.0


# ---------------------------------------------------- attention implementations and weights


def _layer(pos_encoding, implementation="vmap", window=None, dtype=jnp.float32):
  return attention.MultiHeadAttention(16, 4, implementation=implementation, window=window,
                                      dtype=dtype, pos_encoding=pos_encoding, rngs=nnx.Rngs(0))


def test_returned_weights_include_rope_and_alibi():
  x = _normal(5, (2, 11, 16))
  for pe in ("rope", "alibi"):
    layer = _layer(pe)
    q, k, _ = (np.asarray(a) for a in layer._project(x))  # BxTxHxK, before any encoding
    _, w_BxHxTxT = layer(x, return_weights=True, causal=True)
    positions = np.arange(11)
    if pe == "rope":
      q, k = _rope_by_complex_numbers(q, positions), _rope_by_complex_numbers(k, positions)
    logits = np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(4)
    if pe == "alibi":
      slopes = np.array([2.0 ** (-8 * h / 4) for h in range(1, 5)])
      logits = logits - slopes[None, :, None, None] * (positions[:, None] - positions[None, :])
    logits = np.where(np.tril(np.ones((11, 11), bool)), logits, -np.inf)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    _close(w_BxHxTxT, expected / expected.sum(-1, keepdims=True), 1e-5)


CASES = [(None, "chunked"), (None, "xla"), (4, "blocked"), (4, "xla")]


# Whole attention layers in every implementation (10-26 CPU-s each): the slow suite.
@pytest.mark.parametrize("pos_encoding", [pytest.param(p, marks=pytest.mark.slow)
                                          for p in ("rope", "alibi")])
def test_every_implementation_equals_the_reference_with_the_encoding(pos_encoding):
  x = _normal(6, (2, 19, 16))
  mask = attention.padding_mask(jax.random.bernoulli(jax.random.key(7), 0.8, (2, 19)))

  def value_and_grad(impl, window, m):
    layer = _layer(pos_encoding, impl, window)
    f = lambda x: layer(x, m, causal=True)  # noqa: E731
    out, vjp = jax.vjp(f, x)
    return out, vjp(jnp.cos(out))[0]

  for window, impl in CASES:
    for m in (None, mask):
      reference = value_and_grad("vmap", window, m)
      _close(value_and_grad(impl, window, m), reference, 1e-5)
  # Bidirectional: 'xla' against the reference (ALiBi's bias is then -m * |t - s|).
  _close(_layer(pos_encoding, "xla")(x, mask, causal=False),
         _layer(pos_encoding)(x, mask, causal=False), 1e-5)
  # The encoding changes the output (so the comparison above tests it).
  plain = _layer("none")(x, causal=True)
  assert float(jnp.abs(_layer(pos_encoding)(x, causal=True) - plain).max()) > 1e-3


@pytest.mark.parametrize("pos_encoding", [pytest.param(p, marks=pytest.mark.slow)
                                          for p in ("rope", "alibi")])  # 10-17 CPU-s each
def test_chunked_and_blocked_functions_with_several_chunks_and_blocks(pos_encoding):
  b, t, h, k = 2, 23, 4, 6
  q, kk, v = (_normal(i, (b, t, h, k)) for i in (8, 9, 10))
  slopes = jnp.asarray(positional.alibi_slopes(h)) if pos_encoding == "alibi" else None
  if pos_encoding == "rope":
    q, kk = (positional.apply_rope(a, jnp.arange(t)) for a in (q, kk))
  pos = jnp.arange(t)
  bias = None if slopes is None else positional.alibi_bias(slopes, pos, pos)
  expected, _ = attention.multi_head_attention(q, kk, v, attention.causal_mask(t), bias)
  for chunks in (3,):  # chunks of 8, 7, 8 queries
    _close(attention.chunked_causal_attention(q, kk, v, chunks, None, slopes), expected)
  for window in (1, 5):
    expected, _ = attention.multi_head_attention(q, kk, v, attention.causal_mask(t, window), bias)
    _close(attention.local_causal_attention(q, kk, v, window, None, slopes), expected)


@pytest.mark.slow  # two chunks of 65 queries, values and gradients (13 CPU-s)
def test_chunked_layer_with_several_chunks_a_padding_mask_and_alibi_equals_the_reference():
  # Long enough for the layer's causal fast path to split the queries into chunks, so the
  # per-chunk ALiBi bias and the per-chunk slice of a BxTxT padding mask are both exercised.
  t = 130
  assert attention._causal_chunks(t) == 2  # chunks of 65 queries
  x = _normal(14, (2, t, 16))
  valid = jax.random.bernoulli(jax.random.key(15), 0.8, (2, t)).at[:, 0].set(False)
  mask = attention.padding_mask(valid)

  def value_and_grad(impl):
    layer = _layer("alibi", impl)
    out, vjp = jax.vjp(lambda x: layer(x, mask, causal=True), x)
    return out, vjp(jnp.cos(out))[0]

  chunked, reference = value_and_grad("chunked"), value_and_grad("vmap")
  _close(chunked, reference, 1e-5)
  # The bias and the mask matter at this length (so the comparison tests them).
  plain = _layer("none", "chunked")(x, mask, causal=True)
  assert float(jnp.abs(chunked[0] - plain).max()) > 1e-3
  assert float(jnp.abs(chunked[0] - _layer("alibi", "chunked")(x, causal=True)).max()) > 1e-3


@pytest.mark.parametrize("pos_encoding", ["rope", "alibi"])
def test_bfloat16_runs_every_implementation_close_to_float32(pos_encoding):
  x = _normal(11, (2, 19, 16))
  for window, impl in [(None, "vmap"), *CASES]:
    reference = _layer(pos_encoding, "vmap", window)(x, causal=True)
    out = _layer(pos_encoding, impl, window, jnp.bfloat16)(x.astype(jnp.bfloat16), causal=True)
    assert out.dtype == jnp.bfloat16
    _close(out, reference, 5e-2)


# ------------------------------------------------------------------ the model and its config


# The fast implementations equal the reference (tests above); the model uses its default one.
@pytest.mark.slow  # compiles and trains/differentiates whole models (10-13 CPU-s each)
@pytest.mark.parametrize("name", models.names("attention"))
def test_model_is_causal_and_token_gradients_flow_with_rope_and_alibi(name):
  tokens = jax.random.randint(jax.random.key(12), (1, 14), 0, 7)
  for pe in ("rope", "alibi"):
    model = models.build_model(
        models.model_settings(name, d_model=16, num_heads=2, num_layers=2, mlp_dim=32,
                              max_len=32, pos_encoding=pe),
        vocab_size=7, rngs=nnx.Rngs(0))
    x_BxTxD = model.embed(tokens)
    # d logit(t = 6) / d embedding(s): nonzero for s <= 6, exactly zero after.
    grad = jax.grad(lambda x: model.from_embeddings(x)[0, 6].sum())(x_BxTxD)
    per_position = np.abs(np.asarray(grad[0])).sum(-1)
    assert (per_position[:7] > 0).all() and (per_position[7:] == 0).all(), pe


def test_a_bad_pos_encoding_is_one_line_naming_the_field_and_the_allowed_values():
  for name in models.names("attention"):
    with pytest.raises(ValueError) as error:
      models.model_settings(name, pos_encoding="rotary")
    message = str(error.value)
    assert "\n" not in message and "model.pos_encoding='rotary'" in message
    assert all(repr(e) in message for e in ENCODINGS)
  with pytest.raises(ValueError, match=r"model.pos_encoding='rope': needs an even head dim.*"
                                       r"model.d_model / model.num_heads = 12/4 = 3"):
    models.model_settings("transformer", d_model=12, num_heads=4, pos_encoding="rope")
  models.model_settings("transformer", d_model=12, num_heads=4, pos_encoding="alibi")
  # The length check stays for the encodings without a table.
  model = models.build_model(models.model_settings("transformer", d_model=8, num_heads=2,
                                                   max_len=8, pos_encoding="alibi"),
                             vocab_size=5, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="sequence length 9 exceeds model.max_len=8"):
    model(jnp.zeros((1, 9), jnp.int32))


@pytest.mark.slow  # compiles and trains/differentiates whole models (10-13 CPU-s each)
@pytest.mark.parametrize("name", models.names("attention"))
def test_a_tiny_model_trains_with_rope_and_alibi(name):
  e = models.entry(name)
  # A sequence to repeat shifted by 3: the model needs to know where it is.
  tokens = jax.random.randint(jax.random.key(13), (8, 24), 0, 6)
  tokens = tokens.at[:, 3:].set(tokens[:, :-3])
  for pe in ("rope", "alibi"):  # the other encodings train in test_models and test_train
    settings = models.model_settings(name, **{**e.tiny, "pos_encoding": pe, "max_len": 32})
    model = models.build_model(settings, vocab_size=6, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
      def loss_fn(model):
        logits = model(tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
      loss, grads = nnx.value_and_grad(loss_fn)(model)
      optimizer.update(model, grads)
      return loss

    losses = [float(step(model, optimizer)) for _ in range(4)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], (pe, losses)
