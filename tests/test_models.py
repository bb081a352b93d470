"""Tests for seqresearch.models: recurrences, attention, causality, the build boundary.

Sizes are tiny so the whole file runs in well under a minute and a half on a 2-core CPU.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqresearch.models import (MODEL_NAMES, RecurrentSettings, TransformerSettings,
                                build_model, model_settings)
from seqresearch.models import attention, recurrent

VOCAB = 5
SMALL = {
    "rnn": dict(embed_dim=8, hidden_size=8, num_layers=2),
    "lstm": dict(embed_dim=8, hidden_size=8, num_layers=2),
    "gru": dict(embed_dim=8, hidden_size=8, num_layers=2),
    "transformer": dict(d_model=8, num_heads=2, num_layers=2, mlp_dim=16, max_len=16),
}
CELLS = ("rnn", "lstm", "gru")


@functools.cache  # building is slow in eager mode; no test mutates a model it gets here
def _model(name: str, seed: int = 0, **fields) -> nnx.Module:
  settings = model_settings(name, **{**SMALL[name], **fields})
  return build_model(settings, vocab_size=VOCAB, rngs=nnx.Rngs(seed))


def _tokens(batch: int, length: int, seed: int = 0) -> jax.Array:
  return jax.random.randint(jax.random.key(seed), (batch, length), 0, VOCAB, jnp.int32)


def _random_carry(cell: recurrent.RecurrentCell, batch: int, key: jax.Array):
  carry = cell.initial_carry(batch)
  leaves, treedef = jax.tree.flatten(carry)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape) for k, x in
                                      zip(keys, leaves)])


def _close(a, b, tol: float = 1e-5) -> None:
  chex.assert_trees_all_close(a, b, rtol=tol, atol=tol)


# ---------------------------------------------------------------- recurrent layers and cells


@pytest.mark.parametrize("cell", CELLS)
def test_scan_equals_python_loop_for_every_hoist_and_unroll(cell):
  b, t, i = 2, 7, 5
  x_BxTxI = jax.random.normal(jax.random.key(1), (b, t, i))
  layers = {
      (hoist, unroll): recurrent.RecurrentLayer(
          RecurrentSettings(cell=cell, hidden_size=6, hoist_input=hoist, unroll=unroll),
          i, rngs=nnx.Rngs(0))
      for hoist in (False, True) for unroll in (1, 4)}
  reference = layers[(False, 1)]
  for layer in layers.values():  # same seed, same parameters: only the schedule differs
    chex.assert_trees_all_equal(nnx.state(layer), nnx.state(reference))
  carry0 = _random_carry(reference.cell, b, jax.random.key(2))

  carry, outputs = carry0, []
  for step in range(t):
    carry, h_BxH = reference.cell(carry, x_BxTxI[:, step])
    outputs.append(h_BxH)
  expected = (jnp.stack(outputs, axis=1), carry)

  for (hoist, unroll), layer in layers.items():
    y_BxTxH, final = layer(x_BxTxI, carry0)
    assert y_BxTxH.shape == (b, t, 6) and y_BxTxH.dtype == jnp.float32
    _close((y_BxTxH, final), expected)


@pytest.mark.parametrize("cell", CELLS)
def test_whole_sequence_equals_chunks_with_carried_state(cell):
  model = _model(cell)
  tokens = _tokens(2, 9)
  full_logits, full_state = model.apply_with_state(tokens, model.initial_state(2))
  logits_a, state = model.apply_with_state(tokens[:, :4], model.initial_state(2))
  logits_b, state = model.apply_with_state(tokens[:, 4:], state)
  _close(jnp.concatenate([logits_a, logits_b], axis=1), full_logits)
  _close(state, full_state)
  assert len(state) == 2  # one carry per layer
  leaves = jax.tree.leaves(state)
  assert len(leaves) == (4 if cell == "lstm" else 2)
  assert all(x.shape == (2, 8) and x.dtype == jnp.float32 for x in leaves)


def test_lstm_cell_equals_flax_lstm_cell():
  i, h, b = 3, 4, 2
  theirs = nnx.LSTMCell(i, h, rngs=nnx.Rngs(1))
  keys = jax.random.split(jax.random.key(3), 4)
  gates = (theirs.hi, theirs.hf, theirs.hg, theirs.ho)
  for key, dense in zip(keys, gates):  # nonzero biases so the bias mapping is tested too
    dense.bias[...] = jax.random.normal(key, (h,))
  ours = recurrent.LSTMCell(i, h, rngs=nnx.Rngs(2))
  # Flax: gate order i, f, g, o; input kernels without bias, recurrent kernels with bias.
  ours.input_proj.kernel[...] = jnp.concatenate(
      [d.kernel[...] for d in (theirs.ii, theirs.if_, theirs.ig, theirs.io)], axis=1)
  ours.input_proj.bias[...] = jnp.concatenate([d.bias[...] for d in gates])
  ours.recurrent_proj.kernel[...] = jnp.concatenate([d.kernel[...] for d in gates], axis=1)

  carry_ours = carry_theirs = _random_carry(ours, b, jax.random.key(4))
  for step in range(3):
    x_BxI = jax.random.normal(jax.random.fold_in(jax.random.key(5), step), (b, i))
    carry_ours, y_ours = ours(carry_ours, x_BxI)
    carry_theirs, y_theirs = theirs(carry_theirs, x_BxI)
    _close((carry_ours, y_ours), (carry_theirs, y_theirs))


def test_gru_cell_equals_flax_gru_cell_and_pytorch_form():
  i, h, b = 3, 4, 2
  theirs = nnx.GRUCell(i, h, rngs=nnx.Rngs(1))
  theirs.dense_i.bias[...] = jax.random.normal(jax.random.key(3), (3 * h,))
  ours = recurrent.GRUCell(i, h, rngs=nnx.Rngs(2))
  ours.input_proj.kernel[...] = theirs.dense_i.kernel[...]  # same (r, z, n) fused layout
  ours.input_proj.bias[...] = theirs.dense_i.bias[...]
  ours.recurrent_proj.kernel[...] = theirs.dense_h.kernel[...]
  h_BxH = jax.random.normal(jax.random.key(4), (b, h))
  x_BxI = jax.random.normal(jax.random.key(5), (b, i))
  _close(ours(h_BxH, x_BxI), theirs(h_BxH, x_BxI))

  # With b_hn != 0 (which Flax lacks) we match PyTorch's nn.GRU equations, written out here.
  b_hn = jax.random.normal(jax.random.key(6), (h,))
  ours.candidate_bias[...] = b_hn
  wx = np.asarray(x_BxI @ ours.input_proj.kernel[...] + ours.input_proj.bias[...][None])
  wh = np.asarray(h_BxH @ ours.recurrent_proj.kernel[...])
  sig = lambda a: 1 / (1 + np.exp(-a))
  r, z = sig(wx[:, :h] + wh[:, :h]), sig(wx[:, h:2 * h] + wh[:, h:2 * h])
  n = np.tanh(wx[:, 2 * h:] + r * (wh[:, 2 * h:] + np.asarray(b_hn)))
  _close(ours(h_BxH, x_BxI)[0], (1 - z) * n + z * np.asarray(h_BxH))


def test_lstm_gate_bias_init_default_and_chrono():
  default = _model("lstm", forget_bias=2.5)
  chrono = _model("lstm", lstm_init="chrono", chrono_max_len=50)
  for layer in default.layers:
    i_H, f_H, g_H, o_H = jnp.split(layer.cell.input_proj.bias[...], 4)
    np.testing.assert_array_equal(f_H, 2.5)
    np.testing.assert_array_equal(jnp.concatenate([i_H, g_H, o_H]), 0.0)
  for layer in chrono.layers:
    i_H, f_H, g_H, o_H = jnp.split(layer.cell.input_proj.bias[...], 4)
    assert jnp.all(f_H >= 0.0) and jnp.all(f_H <= np.log(49.0) + 1e-6)
    assert jnp.std(f_H) > 0.3  # spread over time scales, not a constant
    np.testing.assert_array_equal(i_H, -f_H)
    np.testing.assert_array_equal(jnp.concatenate([g_H, o_H]), 0.0)


# ---------------------------------------------------------------- attention


def test_multi_head_attention_equals_jax_dot_product_attention():
  b, t, n, k = 2, 5, 3, 4
  q, kk, v = (jax.random.normal(key, (b, t, n, k)) for key in
              jax.random.split(jax.random.key(0), 3))
  valid_BxT = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
  cases = [
      (None, dict()),
      (attention.causal_mask(t), dict(is_causal=True)),
      (attention.padding_mask(valid_BxT) & attention.causal_mask(t)[None],
       dict(mask=(attention.padding_mask(valid_BxT) & attention.causal_mask(t)[None])[:, None])),
  ]
  for mask, jax_kwargs in cases:
    out_BxTxHxK, w_BxHxTxT = attention.multi_head_attention(q, kk, v, mask)
    _close(out_BxTxHxK, jax.nn.dot_product_attention(q, kk, v, **jax_kwargs))
    _close(w_BxHxTxT.sum(-1), jnp.ones((b, n, t)))
    if mask is not None:
      allowed = jnp.broadcast_to(mask[:, None] if mask.ndim == 3 else mask, w_BxHxTxT.shape)
      np.testing.assert_array_equal(jnp.where(allowed, 0.0, w_BxHxTxT), 0.0)
      assert jnp.all(jnp.where(allowed, w_BxHxTxT, 1.0) > 0.0)


_IMPLEMENTATIONS = [("vmap", None), ("chunked", None), ("xla", None), ("vmap", 3),
                    ("blocked", 3), ("xla", 3)]
if jax.default_backend() == "gpu":
  _IMPLEMENTATIONS.append(("cudnn", None))


# The reference ('vmap', 11 CPU-s) in the slow suite; the fast forms by default.
@pytest.mark.parametrize("implementation,window", [
    pytest.param(i, w, marks=pytest.mark.slow) if i == "vmap" else (i, w)
    for i, w in _IMPLEMENTATIONS])
def test_a_query_with_no_allowed_key_outputs_zero_and_passes_no_gradient(implementation, window):
  """Issue 14 item 4: a padding mask that leaves query 0 no key (causal, key 0 padded) gave it
  uniform weights over all keys, future ones included."""
  b, t, d = 2, 6, 8
  layer = attention.MultiHeadAttention(d, 2, implementation=implementation, window=window,
                                       rngs=nnx.Rngs(0))
  valid_BxT = jnp.ones((b, t), bool).at[:, 0].set(False)
  mask = attention.padding_mask(valid_BxT)
  x_BxTxD = jax.random.normal(jax.random.key(1), (b, t, d))
  changed = x_BxTxD.at[:, 3:].set(jax.random.normal(jax.random.key(2), (b, t - 3, d)))
  out0 = lambda x: layer(x, mask, causal=True)[:, 0]  # noqa: E731
  bias_D = layer.out_proj.bias[...]
  # Zero attention output: the layer's output there is its output projection's bias alone.
  _close(out0(x_BxTxD), jnp.broadcast_to(bias_D, (b, d)))
  _close(out0(changed), out0(x_BxTxD))  # the future does not move it
  grad = jax.grad(lambda x: out0(x).sum())(x_BxTxD)
  np.testing.assert_array_equal(grad, 0.0)
  # The other queries still attend (to their allowed keys): not zeroed.
  assert jnp.all(jnp.abs(layer(x_BxTxD, mask, causal=True)[:, 1:] - bias_D[None, None]).sum(-1) > 0.0)
  if implementation == "vmap":  # and the weights of that row are zero, not uniform
    _, w_BxHxTxT = layer(x_BxTxD, mask, return_weights=True, causal=True)
    np.testing.assert_array_equal(w_BxHxTxT[:, :, 0], 0.0)


def test_transformer_returns_causal_attention_weights_per_layer():
  model = _model("transformer")
  tokens = _tokens(2, 6)
  logits, weights = model(tokens, return_attention=True)
  _close(logits, model(tokens))
  assert len(weights) == 2
  for w_BxHxTxT in weights:
    assert w_BxHxTxT.shape == (2, 2, 6, 6)
    np.testing.assert_array_equal(jnp.triu(w_BxHxTxT, k=1), 0.0)


# ---------------------------------------------------------------- every model


MODEL_CASES = [("rnn", {}), ("lstm", {}), ("gru", {}),
               ("transformer", dict(pos_encoding="sinusoidal")),
               ("transformer", dict(pos_encoding="learned")),
               ("transformer", dict(pos_encoding="none"))]


@pytest.mark.parametrize("name,fields", MODEL_CASES)
def test_forward_shapes_and_embedding_split(name, fields):
  model = _model(name, **fields)
  tokens = _tokens(3, 7)
  logits = model(tokens)
  assert logits.shape == (3, 7, VOCAB) and logits.dtype == jnp.float32
  x_BxTxE = model.embed(tokens)
  assert x_BxTxE.shape == (3, 7, 8) and x_BxTxE.dtype == jnp.float32
  _close(model.from_embeddings(x_BxTxE), logits)
  assert jnp.all(jnp.isfinite(logits))


def _dependence_TxT(model: nnx.Module, tokens_1xT: jax.Array) -> np.ndarray:
  """dep[t, s] = sum |d logits[0, t, :] / d embeddings[0, s, :]|."""
  graphdef, state = nnx.split(model)
  jacobian = jax.jit(jax.jacrev(lambda st, x: nnx.merge(graphdef, st).from_embeddings(x),
                                argnums=1))
  jac_TxVxTxE = jacobian(state, model.embed(tokens_1xT))[0, :, :, 0]
  return np.asarray(jnp.abs(jac_TxVxTxE).sum(axis=(1, 3)))


@pytest.mark.parametrize("name,fields", MODEL_CASES)
def test_causality_by_gradient(name, fields):
  dep_TxT = _dependence_TxT(_model(name, **fields), _tokens(1, 6))
  future = np.triu(np.ones_like(dep_TxT, dtype=bool), k=1)
  np.testing.assert_array_equal(dep_TxT[future], 0.0)  # exactly: no leak from the future
  assert np.all(dep_TxT[~future] > 0.0)  # and every past position does reach the output


def test_bidirectional_transformer_is_not_causal():
  dep_TxT = _dependence_TxT(_model("transformer", causal=False), _tokens(1, 6))
  assert np.all(dep_TxT[np.triu_indices(6, k=1)] > 0.0)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_jitted_split_merge_forward_and_grad_trace_once(name):
  chex.clear_trace_counter()  # the counter is keyed by code location, shared by params
  model = _model(name)
  graphdef, state = nnx.split(model)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss_and_grad(state, tokens_BxT):
    def loss(state):
      logits = nnx.merge(graphdef, state)(tokens_BxT)
      return -jnp.mean(jax.nn.log_softmax(logits)[..., 0])
    return jax.value_and_grad(loss)(state)

  for seed in range(3):
    value, grads = loss_and_grad(state, _tokens(2, 6, seed))
  _close(value, -jnp.mean(jax.nn.log_softmax(model(_tokens(2, 6, 2)))[..., 0]))
  grad_norms = [jnp.linalg.norm(g) for g in jax.tree.leaves(grads)]
  # Every parameter, recurrent kernels closed over by the scan included, gets a gradient.
  assert all(jnp.isfinite(g) and g > 0.0 for g in grad_norms)


def test_jitted_chunked_recurrent_evaluation_traces_once():
  chex.clear_trace_counter()
  model = _model("gru")
  graphdef, params = nnx.split(model)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def chunk(params, tokens_BxT, carry):
    return nnx.merge(graphdef, params).apply_with_state(tokens_BxT, carry)

  tokens = _tokens(2, 12)
  carry, pieces = model.initial_state(2), []
  for start in range(0, 12, 4):
    logits, carry = chunk(params, tokens[:, start:start + 4], carry)
    pieces.append(logits)
  _close(jnp.concatenate(pieces, axis=1), model(tokens))


# ---------------------------------------------------------------- the build boundary


def test_model_settings_dispatch_and_errors():
  assert model_settings("gru", hidden_size=3) == RecurrentSettings(cell="gru", hidden_size=3)
  assert model_settings("transformer") == TransformerSettings()
  # The table grows (each new model is one entry); these are the essay's four.
  assert {"rnn", "lstm", "gru", "transformer"} <= set(MODEL_NAMES)
  with pytest.raises(ValueError, match=r"model.name='xyz': must be one of \('rnn'"):
    model_settings("xyz")
  with pytest.raises(ValueError, match=r"model.d_model.*allowed fields: \('embed_dim'"):
    model_settings("lstm", d_model=3)
  with pytest.raises(ValueError, match=r"model.cell.*chosen by model.name"):
    model_settings("lstm", cell="gru")
  with pytest.raises(ValueError, match=r"model.hidden_size.*allowed fields: \('d_model'"):
    model_settings("transformer", hidden_size=3)
  with pytest.raises(ValueError, match=r"model.num_heads=3: must divide"):
    model_settings("transformer", d_model=8, num_heads=3)
  with pytest.raises(TypeError, match="model_settings"):
    build_model(dict(d_model=8), vocab_size=VOCAB, rngs=nnx.Rngs(0))


def test_transformer_rejects_sequences_longer_than_max_len():
  for pos_encoding in ("learned", "sinusoidal"):
    model = _model("transformer", max_len=6, pos_encoding=pos_encoding)
    with pytest.raises(ValueError, match=r"sequence length 7 exceeds model.max_len=6"):
      model(_tokens(1, 7))
  assert model(_tokens(1, 6)).shape == (1, 6, VOCAB)  # exactly max_len is fine
