"""GPU-only checks (`pytest -m gpu`; scripts/device_check.py runs them): the cuDNN paths
against our reference code, and sharding over every local device. Elsewhere they are skipped
with the reason shown. One check of the weight layout runs everywhere, on JAX's pure-JAX
reference LSTM, so the cuDNN comparison compares like with like even where it is skipped.

Legend: B batch, T time, I input width, H hidden width, G = 4H fused gates, N heads, K head dim.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental import rnn
from jax.sharding import NamedSharding, PartitionSpec as P

from seqresearch import models
from seqresearch import steps
from seqresearch.models import attention

ON_GPU = jax.default_backend() == "gpu"
requires_gpu = pytest.mark.skipif(
    not ON_GPU, reason=f"needs a GPU (jax.default_backend() is {jax.default_backend()!r})")
B, T, I, H = 3, 7, 5, 8


def _our_lstm_layer():
  """Our one-layer LSTM LM (I-wide embedding, H-wide state) and its recurrent layer."""
  settings = models.model_settings("lstm", embed_dim=I, hidden_size=H)
  lm = models.build_model(settings, vocab_size=11, rngs=nnx.Rngs(0))
  return lm.layers[0]


def _named_params(layer) -> dict[str, jax.Array]:
  """'input_proj/kernel' -> array, for every parameter of the layer."""
  return {"/".join(str(p) for p in path[-2:]): v[...]
          for path, v in nnx.to_flat_state(nnx.state(layer, nnx.Param))}


def _cudnn_weights(layer) -> jax.Array:
  """Our LSTM's weights in cuDNN's flat layout (jax.experimental.rnn's docstring): W_ih (GxI),
  W_hh (GxH), then b_ih, b_hh (G each), gates in the same order as ours (i, f, g, o)."""
  p = _named_params(layer)
  w_ih_IxG, w_hh_HxG = p["input_proj/kernel"], p["recurrent_proj/kernel"]
  b_G = p["input_proj/bias"]
  return jnp.concatenate([w_ih_IxG.T.ravel(), w_hh_HxG.T.ravel(), b_G, jnp.zeros_like(b_G)])


def _ours(layer, x_BxTxI):
  return layer(x_BxTxI, layer.initial_carry(x_BxTxI.shape[0]))[0]


def test_cudnn_weight_layout_matches_our_lstm_on_the_pure_jax_reference():
  layer = _our_lstm_layer()
  x_BxTxI = jax.random.normal(jax.random.key(1), (B, T, I))
  w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(_cudnn_weights(layer), I, H, 1, False)
  zeros_1xBxH = jnp.zeros((1, B, H))
  y_BxTxH = rnn.lstm_ref(x_BxTxI, zeros_1xBxH, zeros_1xBxH, w_ih, w_hh, b_ih, b_hh,
                         jnp.full((B,), T, jnp.int32), I, H, 1, 0.0, False)[0]
  np.testing.assert_allclose(y_BxTxH, _ours(layer, x_BxTxI), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@requires_gpu
def test_cudnn_lstm_equals_ours_with_the_same_weights():
  layer = _our_lstm_layer()
  x_BxTxI = jax.random.normal(jax.random.key(1), (B, T, I))
  zeros_1xBxH = jnp.zeros((1, B, H))
  y_BxTxH, _, _ = rnn.lstm(x_BxTxI, zeros_1xBxH, zeros_1xBxH, _cudnn_weights(layer),
                           jnp.full((B,), T, jnp.int32), I, H, 1, 0.0, False,
                           precision=jax.lax.Precision.HIGHEST)  # no TF32
  np.testing.assert_allclose(y_BxTxH, _ours(layer, x_BxTxI), rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@requires_gpu
def test_cudnn_attention_equals_the_reference():
  n, k = 4, 32
  q_BxTxNxK, k_BxTxNxK, v_BxTxNxK = jax.random.normal(jax.random.key(2), (3, 2, 128, n, k))
  reference_BxTxNxK, _ = attention.multi_head_attention(
      q_BxTxNxK, k_BxTxNxK, v_BxTxNxK, attention.causal_mask(128))
  bf16 = [a.astype(jnp.bfloat16) for a in (q_BxTxNxK, k_BxTxNxK, v_BxTxNxK)]
  cudnn_BxTxNxK = jax.nn.dot_product_attention(*bf16, is_causal=True, implementation="cudnn")
  # cuDNN computes in bfloat16 (8 mantissa bits): outputs of magnitude ~1 agree to ~1e-2.
  np.testing.assert_allclose(np.asarray(cudnn_BxTxNxK, np.float32), reference_BxTxNxK,
                             atol=3e-2, rtol=3e-2)


@pytest.mark.gpu
@requires_gpu
def test_the_batch_is_sharded_over_every_local_device_and_gives_the_same_logits():
  mesh = steps.data_mesh()
  assert mesh.devices.size == jax.local_device_count()
  settings = models.model_settings("lstm", embed_dim=I, hidden_size=H)
  lm = models.build_model(settings, vocab_size=11, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(lm)
  forward = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))
  tokens_BxT = jax.random.randint(jax.random.key(3), (8 * mesh.devices.size, T), 0, 11)
  sharded = jax.device_put(tokens_BxT, NamedSharding(mesh, P("data")))
  assert sharded.sharding.device_set == set(jax.local_devices())
  logits = forward(params, sharded)
  assert logits.sharding.device_set == set(jax.local_devices())
  np.testing.assert_allclose(logits, forward(params, tokens_BxT), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_bfloat16_forward_on_the_device_is_close_to_float32(name):
  if "compute_dtype" not in models.registry.config_fields(name):
    pytest.skip(f"{name}: its settings have no compute_dtype field (issue 17 item 2)")
  entry = models.entry(name)
  lms = [models.build_model(models.model_settings(name, **entry.tiny, compute_dtype=dtype),
                            vocab_size=11, rngs=nnx.Rngs(0))
         for dtype in ("float32", "bfloat16")]
  tokens_BxT = jax.random.randint(jax.random.key(4), (4, 16), 0, 11)
  def logits(lm):
    graphdef, state = nnx.split(lm)
    return jax.jit(lambda st, t: nnx.merge(graphdef, st)(t))(state, tokens_BxT)
  logits_f32, logits_bf16 = (logits(lm) for lm in lms)
  assert logits_bf16.dtype == jnp.float32  # the readout's logits stay float32
  # bfloat16 keeps 8 mantissa bits: logits of a tiny model (magnitude ~1) agree to ~5e-2.
  np.testing.assert_allclose(logits_bf16, logits_f32, atol=5e-2, rtol=5e-2)
