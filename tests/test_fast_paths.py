"""Every fast path computes what its reference form computes: forward values AND gradients.

The fast paths are the settings the benchmark chooses per backend ("auto"): a recurrent
layer's hoisted input projection and its batched-weight-gradient custom VJP, and the
Transformer's attention implementations. Speed is the benchmark's business (never timed here).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from seqresearch import host_memory
from seqresearch.models import (RecurrentSettings, TransformerSettings, build_model,
                                model_settings)
from seqresearch.models import attention, recurrent, transformer
from seqresearch.models import config as model_config

CELLS = ("rnn", "lstm", "gru")


def _close(a, b, tol: float = 2e-5) -> None:
  chex.assert_trees_all_close(a, b, rtol=tol, atol=tol)


def _random_like(tree, key: jax.Array):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape, x.dtype)
                                      for k, x in zip(keys, leaves)])


def _layer_value_and_grads(layer: recurrent.RecurrentLayer, x_BxTxI, carry0, key):
  """The layer's outputs and the pullback of random cotangents of all of them (outputs at
  every step and the final carry) to parameters, inputs and initial carry."""
  graphdef, params = nnx.split(layer)

  @jax.jit
  def run(params, x_BxTxI, carry0):
    out, pullback = jax.vjp(lambda *a: nnx.merge(graphdef, a[0])(*a[1:]), params, x_BxTxI,
                            carry0)
    return out, pullback(_random_like(out, key))

  return run(params, x_BxTxI, carry0)


# In the slow suite (13-22 CPU-s each); the default suite checks the batched weight gradients
# through the whole model (test_batched_model_gradients_through_chunks_and_vmap_equal_autodiff).
@pytest.mark.parametrize("cell", [pytest.param(c, marks=pytest.mark.slow) for c in CELLS])
def test_batched_weight_grads_equal_autodiff(cell):
  b, t, i, h = 3, 7, 5, 6
  x_BxTxI = jax.random.normal(jax.random.key(1), (b, t, i))
  results = {}
  # unroll=3 leaves a remainder over 7 steps; the first form is the plain scan, the reference.
  for hoist, unroll in ((False, 1), (True, 3)):
    for weight_grads in ("autodiff", "batched"):
      settings = RecurrentSettings(cell=cell, hidden_size=h, hoist_input=hoist, unroll=unroll,
                                   weight_grads=weight_grads)
      layer = recurrent.RecurrentLayer(settings, i, rngs=nnx.Rngs(0))
      if cell == "gru":  # b_hn starts at 0; make its gradient path count
        layer.cell.candidate_bias[...] = jax.random.normal(jax.random.key(4), (h,))
      carry0 = _random_like(layer.cell.initial_carry(b), jax.random.key(2))
      results[hoist, unroll, weight_grads] = _layer_value_and_grads(
          layer, x_BxTxI, carry0, jax.random.key(3))
  reference = results[False, 1, "autodiff"]
  for result in results.values():
    _close(result, reference)


def test_batched_model_gradients_through_chunks_and_vmap_equal_autodiff():
  """A 2-layer LSTM over two chunks (the carried state in between), vmapped over two seeds
  as the training loop does. (Every cell's carry cotangents are checked per layer above.)"""
  cell = "lstm"
  tokens = jax.random.randint(jax.random.key(0), (2, 2, 9), 0, 5)

  def grads(weight_grads):
    models = [build_model(model_settings(cell, embed_dim=4, hidden_size=6, num_layers=2,
                                         weight_grads=weight_grads),
                          vocab_size=5, rngs=nnx.Rngs(seed)) for seed in range(2)]
    graphdef, _ = nnx.split(models[0])
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *[nnx.split(m)[1] for m in models])

    def loss(params, tokens_BxT):
      model = nnx.merge(graphdef, params)
      logits_a, state = model.apply_with_state(tokens_BxT[:, :4], model.initial_state(2))
      logits_b, _ = model.apply_with_state(tokens_BxT[:, 4:], state)
      logits = jnp.concatenate([logits_a, logits_b], axis=1)
      return -jnp.mean(jax.nn.log_softmax(logits)[..., 1])

    return jax.jit(jax.vmap(jax.value_and_grad(loss)))(stacked, tokens)

  _close(grads("batched"), grads("autodiff"))


def test_auto_settings_resolve_per_backend():
  auto = RecurrentSettings()
  assert (auto.hoist_input, auto.weight_grads) == ("auto", "auto")
  for backend, chosen in model_config.RECURRENT_AUTO.items():
    resolved = auto.resolved(backend)
    assert resolved.hoist_input == chosen["hoist_input"]
    assert resolved.weight_grads == chosen["weight_grads"]
  assert auto.resolved("tpu") == auto.resolved("cpu")  # unmeasured backends: CPU's choice
  explicit = RecurrentSettings(hoist_input=False, weight_grads="autodiff")
  assert explicit.resolved("cpu") == explicit  # explicit choices are kept
  # A command-line override of the string field gives a string.
  assert RecurrentSettings(hoist_input="True").hoist_input is True
  assert RecurrentSettings(hoist_input="false").hoist_input is False
  with pytest.raises(ValueError, match="model.hoist_input='sometimes'"):
    RecurrentSettings(hoist_input="sometimes")
  with pytest.raises(ValueError, match="model.weight_grads='fast'"):
    RecurrentSettings(weight_grads="fast")
  layer = recurrent.RecurrentLayer(auto, 3, rngs=nnx.Rngs(0))
  chosen = model_config.RECURRENT_AUTO.get(jax.default_backend(),
                                           model_config.RECURRENT_AUTO["cpu"])
  assert (layer.hoist_input, layer.weight_grads) == (chosen["hoist_input"],
                                                      chosen["weight_grads"])


# ---------------------------------------------------------------- the Transformer


def _transformer_value_and_grads(causal: bool, **fields):
  """Logits of a 1-block Transformer on T=200 (3 uneven causal chunks: 67, 66, 67 queries)
  and the pullback of random logit cotangents to every parameter and the embeddings."""
  model = build_model(model_settings("transformer", d_model=8, num_heads=2, num_layers=1,
                                     mlp_dim=16, max_len=200, causal=causal, **fields),
                      vocab_size=5, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  x_BxTxD = model.embed(jax.random.randint(jax.random.key(1), (2, 200), 0, 5))

  @jax.jit
  def run(params, x_BxTxD):
    fn = lambda p, x: nnx.merge(graphdef, p).from_embeddings(x)  # noqa: E731
    logits, pullback = jax.vjp(fn, params, x_BxTxD)
    return logits, pullback(_random_like(logits, jax.random.key(2)))

  return run(params, x_BxTxD)


@pytest.mark.parametrize("causal", [pytest.param(c, marks=pytest.mark.slow)
                                    for c in (True, False)])  # 12-19 CPU-s each
def test_transformer_fast_paths_equal_the_reference(causal):
  reference = _transformer_value_and_grads(causal, attention="vmap", mlp="autodiff")
  fast = [dict(attention="xla", mlp="custom_vjp")]
  if causal:  # 'chunked' is causal only (bidirectional: refused, tested below)
    fast += [dict(attention="chunked", mlp="custom_vjp"), dict(attention="xla", mlp="autodiff")]
  for fields in fast:
    _close(_transformer_value_and_grads(causal, **fields), reference)


def test_chunked_attention_refuses_bidirectional_instead_of_silently_using_xla():
  with pytest.raises(ValueError, match=r"model.attention='chunked': computes causal attention "
                                       r"only, but model.causal=False"):
    TransformerSettings(attention="chunked", causal=False)
  # 'auto' never resolves to the causal-only form for a bidirectional model.
  assert TransformerSettings(causal=False).resolved("cpu").attention == "xla"
  assert TransformerSettings(causal=True).resolved("cpu").attention == "chunked"
  layer = attention.MultiHeadAttention(8, 2, implementation="chunked", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="computes causal attention only, but causal=False"):
    layer(jnp.ones((1, 4, 8)), causal=False)


def _mha_value_and_grads(implementation: str, window: int | None, mask, t: int = 13):
  """Outputs of one MultiHeadAttention (causal, `mask`) and the pullback of random
  cotangents to its parameters and inputs."""
  layer = attention.MultiHeadAttention(8, 2, implementation=implementation, window=window,
                                       rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(layer)
  x_BxTxD = jax.random.normal(jax.random.key(1), (2, t, 8))

  def run(params, x_BxTxD):
    fn = lambda p, x: nnx.merge(graphdef, p)(x, mask, causal=True)  # noqa: E731
    out, pullback = jax.vjp(fn, params, x_BxTxD)
    return out, pullback(_random_like(out, jax.random.key(2)))

  return jax.jit(run)(params, x_BxTxD)


# In the slow suite (15-20 CPU-s each); the default suite has test_models'
# test_multi_head_attention_equals_jax_dot_product_attention and test_positional's equalities.
@pytest.mark.parametrize("window", [pytest.param(w, marks=pytest.mark.slow)
                                    for w in (None, 1, 4, 20)])
def test_every_attention_implementation_equals_the_reference_with_masks_and_windows(window):
  """Causal, with and without a per-example padding mask (a query left with no key among
  them), with and without a local window (13 positions: uneven blocks of 4)."""
  valid_BxT = jnp.ones((2, 13), bool).at[0, 0].set(False).at[1, 5:9].set(False)
  impls = ["xla", "blocked"] if window is not None else ["chunked", "xla"]
  for mask in (None, attention.padding_mask(valid_BxT)):
    reference = _mha_value_and_grads("vmap", window, mask)
    for impl in impls:
      _close(_mha_value_and_grads(impl, window, mask), reference)


def test_local_attention_blocked_model_equals_the_band_masked_reference():
  def run(impl):
    model = build_model(model_settings("local_attention", d_model=8, num_heads=2, num_layers=2,
                                       mlp_dim=16, max_len=64, window=5, attention=impl),
                        vocab_size=5, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    tokens = jax.random.randint(jax.random.key(1), (2, 23), 0, 5)
    loss = lambda p: jnp.mean(nnx.merge(graphdef, p)(tokens)[..., 0])  # noqa: E731
    return jax.jit(jax.value_and_grad(loss))(params)

  _close(run("blocked"), run("vmap"))
  assert model_settings("local_attention").resolved("gpu").attention == "blocked"
  with pytest.raises(ValueError, match="model.causal=False: local attention is causal"):
    model_settings("local_attention", causal=False)
  with pytest.raises(ValueError, match="model.attention='chunked'.*for local attention"):
    model_settings("local_attention", attention="chunked")


@pytest.mark.slow  # 17-27 CPU-s
def test_chunked_causal_attention_equals_masked_attention_for_any_chunking():
  q, k, v = (jax.random.normal(key, (2, 10, 3, 4)) for key in
             jax.random.split(jax.random.key(0), 3))
  expected, _ = attention.multi_head_attention(q, k, v, attention.causal_mask(10))
  for chunks in (1, 3, 7, 10):
    _close(attention.chunked_causal_attention(q, k, v, chunks), expected)


def test_gelu_exact_equals_jax_gelu_value_and_derivative():
  x = jnp.linspace(-6.0, 6.0, 101)
  _close(transformer.gelu_exact(x), jax.nn.gelu(x, approximate=False), 1e-6)
  slope = jax.vmap(jax.grad(transformer.gelu_exact))(x)
  _close(slope, jax.vmap(jax.grad(lambda a: jax.nn.gelu(a, approximate=False)))(x), 1e-6)


def test_transformer_auto_settings_resolve_per_backend():
  auto = TransformerSettings()
  assert (auto.attention, auto.mlp) == ("auto", "auto")
  for backend, chosen in model_config.TRANSFORMER_AUTO.items():
    resolved = auto.resolved(backend)
    assert (resolved.attention, resolved.mlp) == (chosen["attention"], chosen["mlp"])
  with pytest.raises(ValueError, match="model.attention='flash'"):
    TransformerSettings(attention="flash")
  with pytest.raises(ValueError, match="model.mlp='fused'"):
    TransformerSettings(mlp="fused")


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN attention needs a GPU")
def test_cudnn_attention_is_close_to_the_reference():  # bfloat16 inside: close, not equal
  reference = _transformer_value_and_grads(True, attention="vmap", mlp="autodiff")
  _close(_transformer_value_and_grads(True, attention="cudnn", mlp="autodiff"), reference, 3e-2)


_FAULTS_SCRIPT = """
import resource, sys
import jax, optax
from flax import nnx
from seqresearch import host_memory, models
print(host_memory.configure(sys.argv[1], jax.default_backend()))
model = models.build_model(models.model_settings("lstm", embed_dim=64, hidden_size=256),
                           vocab_size=16, rngs=nnx.Rngs(0))
graphdef, params = nnx.split(model)
tx = optax.adam(1e-3)
tokens = jax.random.randint(jax.random.key(0), (64, 64), 0, 16)

@jax.jit
def step(state):
  loss = lambda p: nnx.merge(graphdef, p)(tokens).mean()
  grads = jax.grad(loss)(state[0])
  updates, opt = tx.update(grads, state[1], state[0])
  return optax.apply_updates(state[0], updates), opt

state = (params, tx.init(params))
for _ in range(10):  # the heap grows to the step's peak over the first few steps
  state = step(state)
state = jax.block_until_ready(state)
faults = []
for _ in range(30):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  state = jax.block_until_ready(step(state))
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[len(faults) // 2])
"""


@pytest.mark.slow  # 17-27 CPU-s
@pytest.mark.skipif(host_memory._mallopt() is None,  # pylint: disable=protected-access
                    reason="host_allocator='keep' needs glibc's mallopt (Linux)")
def test_host_allocator_keep_reuses_memory_instead_of_faulting_in_fresh_pages():
  """'keep' (the CPU default) makes a train step reuse the last step's freed temporaries: the
  median step's minor page faults (30 steps after 10 warm-up steps) fall from one per 4 KiB of
  temporaries to about none. Counted by the kernel (getrusage), not timed. The median, not the
  mean: XLA runs some steps on a thread with a malloc arena of its own (more often on a loaded
  machine), and such a step may map its temporaries afresh (seqresearch/host_memory.py); in
  CI about one step in five did (a mean over 10 steps: 2,515 faults against 12,926)."""
  import os, subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  faults = {}
  for mode in ("system", "keep"):  # host memory: the CPU backend, whatever else is present
    out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, mode], capture_output=True,
                         text=True, timeout=300, check=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"}).stdout.split()
    assert out[0] == mode, out
    faults[mode] = float(out[-1])
  assert faults["system"] > 20, faults  # MBs of temporaries (20 even with 2 MiB huge pages)
  assert faults["keep"] < 0.05 * faults["system"], faults


@pytest.mark.slow  # 17-27 CPU-s
def test_target_nll_equals_the_gather_with_its_gradient():
  """The one-hot pick (flat compile time in T) computes exactly what the gather does."""
  from seqresearch import evaluation  # pylint: disable=g-import-not-at-top
  logits = 5.0 * jax.random.normal(jax.random.key(0), (4, 33, 11))
  targets = jax.random.randint(jax.random.key(1), (4, 33), 0, 11)
  weights = jax.random.uniform(jax.random.key(2), (4, 33))

  def gather(lg):
    logp = jax.nn.log_softmax(lg)
    return -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]

  def one_hot(lg):
    return evaluation.target_nll(jax.nn.log_softmax(lg), targets)

  chex.assert_trees_all_equal(one_hot(logits), gather(logits))
  grad = lambda f: jax.grad(lambda lg: (f(lg) * weights).sum())(logits)  # noqa: E731
  _close(grad(one_hot), grad(gather), tol=1e-6)
