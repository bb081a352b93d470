"""Every model of the table: causality, chunked evaluation; the linear recurrences' two scans;
the published initialisations (LRU ring and gamma, S6's S4D-real A and Delta); training
through the real loop with vmapped seeds and two sharded devices.

Sizes are tiny: the n = 4096 scan comparison runs on width-4 models.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqresearch import models
from seqresearch.models import attention, linear_scan, lru

VOCAB = 5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Models whose settings have a `scan` field: the recurrences linear in the state.
LINEAR = tuple(n for n in models.names() if "scan" in models.registry.config_fields(n))
# Width-4 sizes for the long-sequence comparison, from each model's own tiny fields.
NARROW = {"d_model": 4, "state_size": 4, "embed_dim": 4, "hidden_size": 4, "dt_rank": 1}


def _build(name: str, seed: int = 0, **fields) -> nnx.Module:
  e = models.entry(name)
  settings = models.model_settings(name, **{**e.tiny, **fields})
  return models.build_model(settings, vocab_size=VOCAB, rngs=nnx.Rngs(seed))


def _tokens(batch: int, length: int, seed: int = 0) -> jax.Array:
  return jax.random.randint(jax.random.key(seed), (batch, length), 0, VOCAB, jnp.int32)


def _close(a, b, tol: float = 1e-5) -> None:
  chex.assert_trees_all_close(a, b, rtol=tol, atol=tol)


def test_the_table_has_the_new_models_with_distinct_colours_and_known_families():
  assert {"lru", "mingru", "minlstm", "s6", "conv", "local_attention"} <= set(models.MODELS)
  assert set(LINEAR) == {"lru", "mingru", "minlstm", "s6"}
  colours = [e.color for e in models.MODELS.values()]
  assert len(set(colours)) == len(colours)
  labels = [e.label for e in models.MODELS.values()]
  assert len(set(labels)) == len(labels)
  assert {e.family for e in models.MODELS.values()} == set(models.registry.FAMILIES)
  for name in LINEAR:
    assert models.entry(name).family == "linear_recurrence"
    assert models.entry(name).settings.is_recurrent


# ---------------------------------------------------------------- every model


def _dependence_TxT(model: nnx.Module, tokens_1xT: jax.Array) -> np.ndarray:
  """dep[t, s] = sum |d logits[0, t, :] / d embeddings[0, s, :]|."""
  graphdef, state = nnx.split(model)
  fn = lambda st, x: nnx.merge(graphdef, st).from_embeddings(x)  # noqa: E731
  jac_TxVxTxE = jax.jit(jax.jacrev(fn, argnums=1))(state, model.embed(tokens_1xT))[0, :, :, 0]
  return np.asarray(jnp.abs(jac_TxVxTxE).sum(axis=(1, 3)))


@pytest.mark.parametrize("name", models.names())
def test_causality_by_gradient_for_every_model(name):
  """Output at t is independent of inputs after t, and depends on every input up to t."""
  dep_TxT = _dependence_TxT(_build(name), _tokens(1, 7))
  future = np.triu(np.ones_like(dep_TxT, dtype=bool), k=1)
  np.testing.assert_array_equal(dep_TxT[future], 0.0)
  assert np.all(dep_TxT[~future] > 0.0)


def test_local_attention_and_convolution_see_exactly_their_window():
  # One local-attention layer, window 3: t reads t-2 .. t only.
  dep = _dependence_TxT(_build("local_attention", window=3), _tokens(1, 9))
  allowed = np.asarray(attention.causal_mask(9, 3))
  np.testing.assert_array_equal(dep[~allowed], 0.0)
  assert np.all(dep[allowed] > 0.0)
  # Two dilated conv layers, k = 2: dilations 1, 2, receptive field 4 = k^L.
  settings = models.model_settings("conv", d_model=4, kernel_size=2, num_layers=2)
  assert settings.receptive_field() == 4
  dep = _dependence_TxT(models.build_model(settings, vocab_size=VOCAB, rngs=nnx.Rngs(0)),
                        _tokens(1, 9))
  lag = np.arange(9)[:, None] - np.arange(9)[None, :]
  np.testing.assert_array_equal(dep[(lag < 0) | (lag >= 4)], 0.0)
  assert np.all(dep[(lag >= 0) & (lag < 4)] > 0.0)


@pytest.mark.parametrize(  # lru and s6 (8 CPU-s each) in the slow suite
    "name", [n if n not in ("lru", "s6") else pytest.param(n, marks=pytest.mark.slow)
             for n in models.names() if models.entry(n).settings.is_recurrent])
def test_whole_sequence_equals_chunks_with_carried_state(name):
  fields = {"scan": "sequential"} if name in LINEAR else {}
  model = _build(name, **fields)
  tokens = _tokens(2, 11)
  full, full_state = model.apply_with_state(tokens, model.initial_state(2))
  state, pieces = model.initial_state(2), []
  for lo, hi in ((0, 4), (4, 5), (5, 11)):  # uneven chunks, one of a single step
    logits, state = model.apply_with_state(tokens[:, lo:hi], state)
    pieces.append(logits)
  _close(jnp.concatenate(pieces, axis=1), full)
  _close(state, full_state)
  _close(full, model(tokens))


# ---------------------------------------------------------------- the two scans


def _logits_and_grads(model: nnx.Module, tokens_BxT: jax.Array):
  graphdef, params = nnx.split(model)

  def loss(p):
    logits = nnx.merge(graphdef, p)(tokens_BxT)
    return -jnp.mean(jax.nn.log_softmax(logits)[..., 0]), logits

  (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return logits, grads


def _train_a_few_steps(model: nnx.Module, steps: int = 3) -> nnx.State:
  graphdef, params = nnx.split(model)
  tx = optax.adam(3e-2)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, tokens_BxT):
    def loss(p):
      return -jnp.mean(jax.nn.log_softmax(nnx.merge(graphdef, p)(tokens_BxT))[..., 1])

    updates, opt = tx.update(jax.grad(loss)(params), opt, params)
    return optax.apply_updates(params, updates), opt

  for i in range(steps):
    params, opt = step(params, opt, _tokens(4, 32, seed=10 + i))
  return params


@pytest.mark.slow  # n = 4096, both scan forms, values and gradients (42-53 CPU-s each)
@pytest.mark.parametrize("name", LINEAR)
def test_sequential_and_associative_scans_agree_at_n_4096(name):
  fields = {k: v for k, v in NARROW.items() if k in models.registry.config_fields(name)}
  sequential = _build(name, scan="sequential", **fields)
  associative = _build(name, scan="associative", **fields)
  long_1xT = _tokens(1, 4096, seed=3)
  init = nnx.state(sequential)
  trained = _train_a_few_steps(sequential)
  assert not jax.tree.all(jax.tree.map(jnp.array_equal, init, trained))
  for params in (init, trained):  # at init, then after 3 Adam steps
    nnx.update(sequential, params)
    nnx.update(associative, params)
    seq_logits, seq_grads = _logits_and_grads(sequential, long_1xT)
    ass_logits, ass_grads = _logits_and_grads(associative, long_1xT)
    _close(ass_logits, seq_logits, 2e-4)
    _close(ass_grads, seq_grads, 2e-3)


def test_linear_recurrence_forms_equal_a_python_loop():
  key_a, key_b, key_h = jax.random.split(jax.random.key(0), 3)
  log_a = -jax.nn.softplus(jax.random.normal(key_a, (50, 2, 3)))
  log_b = jax.random.normal(key_b, (50, 2, 3))
  h0 = jax.random.uniform(key_h, (2, 3))
  h, expected = h0, []
  for t in range(50):
    h = np.exp(log_a[t]) * h + np.exp(log_b[t])
    expected.append(h)
  for scan in linear_scan.SCANS:
    _close(linear_scan.log_linear_recurrence(log_a, log_b, h0, scan), jnp.stack(expected))
    _close(linear_scan.linear_recurrence(jnp.exp(log_a), jnp.exp(log_b), h0, scan),
           jnp.stack(expected))
  with pytest.raises(ValueError, match="model.scan='parallel'"):
    models.model_settings("lru", scan="parallel")


# ---------------------------------------------------------------- published initialisations


def test_lru_ring_init_and_gamma_normalisation():
  """Orvieto et al. 2023: |lambda| uniform (by area) on [r_min, r_max], phase in
  [0, max_phase]; with gamma = sqrt(1 - |lambda|^2) a white-noise input keeps unit state
  variance (without it the gain on [0.9, 0.99] is log((1-.81)/(1-.9801))/(.9801-.81) = 13.3)."""
  settings = models.model_settings("lru", d_model=4, state_size=2000, r_min=0.9, r_max=0.99,
                                   max_phase=math.pi / 10)
  layer = lru.LRULayer(settings, 4, rngs=nnx.Rngs(0))
  lam_N = layer.lam()
  r_N = np.abs(np.asarray(lam_N))
  assert r_N.min() >= 0.9 - 1e-6 and r_N.max() <= 0.99 + 1e-6
  # r^2 uniform: its mean is (r_min^2 + r_max^2) / 2 (r uniform would give a smaller one).
  assert abs(np.mean(r_N ** 2) - (0.81 + 0.9801) / 2) < 0.005
  phase_N = np.angle(np.asarray(lam_N))
  assert phase_N.min() >= 0.0 and phase_N.max() <= math.pi / 10 + 1e-6
  gamma_N = np.exp(np.asarray(layer.gamma_log_N[...]))
  np.testing.assert_allclose(gamma_N, np.sqrt(1 - r_N ** 2), rtol=1e-4)
  # The normalised recurrence on unit complex white noise: state variance ~ 1 per channel.
  key_re, key_im = jax.random.split(jax.random.key(1))
  shape = (1000, 4, 400)  # 400 of the channels; |lambda| <= 0.99 forgets in ~50 steps
  noise = (jax.random.normal(key_re, shape) + 1j * jax.random.normal(key_im, shape)) / math.sqrt(2)
  x = linear_scan.linear_recurrence(lam_N[None, None, :400], noise * gamma_N[None, None, :400],
                                    jnp.zeros((4, 400), jnp.complex64), "sequential")
  gain = float(jnp.mean(jnp.abs(x[-300:]) ** 2))
  assert 0.9 < gain < 1.1, gain


def test_s6_s4d_real_a_and_delta_init():
  settings = models.model_settings("s6", d_model=8, state_size=5, dt_min=0.01, dt_max=0.05)
  model = models.build_model(settings, vocab_size=VOCAB, rngs=nnx.Rngs(0))
  layer = model.layers[0]
  a_ExN = -np.exp(np.asarray(layer.a_log_ExN[...]))
  np.testing.assert_allclose(a_ExN, -np.broadcast_to(np.arange(1, 6), (16, 5)), rtol=1e-6)
  dt_E = np.asarray(jax.nn.softplus(layer.dt_bias_E[...]))
  assert dt_E.min() >= 0.01 * (1 - 1e-5) and dt_E.max() <= 0.05 * (1 + 1e-5)
  assert dt_E.std() > 0.005  # spread over the range, not a constant


# ---------------------------------------------------------------- through the training loop


_TRAIN_SCRIPT = """
import json, sys
import jax
from configs import copy
from seqresearch import train
out = {"devices": jax.device_count()}
for name in sys.argv[2:]:
  config = copy.get_config(name + ",tiny")
  config.num_seeds, config.num_train_steps, config.progress_bar = 2, 2, False
  config.eval_every_steps = config.checkpoint_every_steps = 2
  summary = train.train_and_evaluate(config, f"{sys.argv[1]}/{name}")
  out[name] = [m["loss"] for m in summary["eval_by_seed"].values()]
print(json.dumps(out))
"""


@pytest.mark.parametrize("names", [
    pytest.param(["s6"], id="s6", marks=pytest.mark.slow),  # 27 CPU-s
    # All six: about 10 min of CPU on a loaded 2-core machine, so in the slow (CI) suite.
    pytest.param(["lru", "mingru", "minlstm", "s6", "conv", "local_attention"], id="all_new",
                 marks=pytest.mark.slow)])
def test_new_models_train_with_vmapped_seeds_on_two_sharded_devices(tmp_path, names):
  """train_and_evaluate with num_seeds=2 on 2 (forced host) devices, for each new model."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  result = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, str(tmp_path), *names],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["devices"] == 2
  for name in names:
    losses = out[name]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), (name, losses)
    assert losses[0] != losses[1], name  # two seeds, two different models
