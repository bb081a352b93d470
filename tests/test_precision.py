"""Mixed precision, `model.compute_dtype` (issue 17 item 2), for every model of the table.

Every test is parametrised over `models.names()`, so a model added to the table is covered at
once; a model whose settings lack `compute_dtype` FAILS here (never skipped silently). The
default suite runs the forward pass (and carry) of every model, and gradients, train steps
with vmapped seeds and a training run of the LSTM; the slow suite runs those for every model.

Tolerance of the bfloat16 forward pass against float32 (same float32 parameters): bfloat16
keeps 8 significant bits, unit roundoff u = 2^-8. Each layer rounds its matmul operands (and
its activations) once, an error of about u relative; the errors of the layers and of the
readout add up (they are independent and partly cancel). So the relative (Frobenius) error of
the logits must stay below 4 u per layer, readout counted as one: TOL = 4 u (L + 1). Measured
on the tiny models: 0.0026-0.0057 (about 1-1.5 u) against TOL = 0.031-0.062.
A model that ignored compute_dtype would give logits bit-identical to float32: the error must
also exceed u / 16, and the forward's matmul FLOPs must be mostly bfloat16.
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
import pytest
from flax import nnx

from seqresearch import build
from seqresearch import models
from seqresearch import steps
from seqresearch.analysis import flops
from seqresearch.bench import baselines, harness
from seqresearch.bench.settings import BenchSettings
from seqresearch.models import precision, recurrent

NAMES = models.names()
# The default suite (a budget of about 90 s on 2 idle cores) runs the forward pass of every
# model and the whole path (train steps, vmapped seeds, a training run) of the LSTM, whose
# custom VJP is hand-written; the slow suite runs everything for every model.
DEFAULT_MODEL = "lstm"


def _slow_unless_default(names=NAMES) -> list:
  return [pytest.param(n, id=n, marks=() if n == DEFAULT_MODEL else pytest.mark.slow)
          for n in names]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 11
U = 2.0 ** -8  # bfloat16 unit roundoff
FLOAT_STATE = (jnp.float32, jnp.complex64)  # carries: float32 (the LRU's state complex64)


def _require_field(name: str) -> None:
  if "compute_dtype" not in models.registry.config_fields(name):
    pytest.fail(f"model {name!r}: its settings class {models.entry(name).settings.__name__} "
                "has no compute_dtype field; issue 17 item 2 asks it of every model.")


def _lm(name: str, dtype: str, **fields) -> nnx.Module:
  settings = models.model_settings(name, **{**models.entry(name).tiny, **fields},
                                   compute_dtype=dtype)
  return models.build_model(settings, vocab_size=VOCAB, rngs=nnx.Rngs(0))


def _tokens(batch: int = 4, length: int = 16) -> jax.Array:
  return jax.random.randint(jax.random.key(4), (batch, length), 0, VOCAB, jnp.int32)


def _relative_error(a, b) -> float:
  a = jnp.concatenate([x.ravel() for x in jax.tree.leaves(a)])
  b = jnp.concatenate([x.ravel() for x in jax.tree.leaves(b)])
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a))


def _float_leaves(tree) -> list[jax.Array]:
  return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]


def _split_pair(name: str):
  """(tolerance, [(graphdef, params) in float32, then in bfloat16]) of `name`'s tiny model."""
  lm32, lm16 = _lm(name, "float32"), _lm(name, "bfloat16")
  num_layers = models.model_settings(name, **models.entry(name).tiny).num_layers
  (graphdef32, params32), (graphdef16, params16) = nnx.split(lm32), nnx.split(lm16)
  # The same float32 parameters: only the compute dtype differs.
  assert all(x.dtype == jnp.float32 for x in _float_leaves(params16))
  chex.assert_trees_all_equal(jax.tree.leaves(params32), jax.tree.leaves(params16))
  return 4 * U * (num_layers + 1), [(graphdef32, params32), (graphdef16, params16)]


# The first model of each family by default; every model in the slow suite (4-8 CPU-s each).
@pytest.mark.parametrize("name", [
    n if n in {models.names(models.entry(n).family)[0] for n in NAMES}
    else pytest.param(n, marks=pytest.mark.slow) for n in NAMES])
def test_bfloat16_forward_is_close_to_float32_and_really_bfloat16(name):
  _require_field(name)
  tol, [(graphdef32, params32), (graphdef16, params16)] = _split_pair(name)
  tokens = _tokens()
  recurrent = models.entry(name).settings.is_recurrent

  def forward(graphdef, params):
    lm = nnx.merge(graphdef, params)
    if not recurrent:
      return lm(tokens), ()
    # Step-by-step evaluation from a carry (the same logits as lm(tokens)).
    return lm.apply_with_state(tokens, lm.initial_state(tokens.shape[0]))

  (logits32, _), (logits16, carry16) = (
      jax.jit(forward, static_argnums=0)(g, p)
      for g, p in ((graphdef32, params32), (graphdef16, params16)))
  assert logits16.dtype == jnp.float32  # the logits handed to the loss stay float32
  # The carry stays float32 (the LRU's complex state complex64).
  assert all(x.dtype in FLOAT_STATE for x in jax.tree.leaves(carry16)), carry16
  error = _relative_error(logits32, logits16)
  assert U / 16 < error <= tol, (name, error, tol)

  # The matmuls really run in bfloat16: most matmul FLOPs have bfloat16 operands (S6's
  # selective-scan readout C h stays float32), and the float32 model has none.
  count = flops.flop_count(lambda p: nnx.merge(graphdef16, p)(tokens), params16, strict=False)
  assert count.matmul_by_dtype.get("bfloat16", 0) >= 0.5 * count.matmul, count.matmul_by_dtype
  count32 = flops.flop_count(lambda p: nnx.merge(graphdef32, p)(tokens), params32, strict=False)
  assert set(count32.matmul_by_dtype) == {"float32"}, count32.matmul_by_dtype


@pytest.mark.parametrize("name", _slow_unless_default())
def test_bfloat16_gradient_is_float32_and_close_to_float32s(name):
  _require_field(name)
  tol, pairs = _split_pair(name)
  tokens = _tokens()
  grads32, grads16 = (
      jax.jit(jax.grad(lambda p, g=g: harness.cross_entropy(nnx.merge(g, p)(tokens), tokens)))(p)
      for g, p in pairs)
  assert all(g.dtype == jnp.float32 for g in _float_leaves(grads16))  # like the params
  error = _relative_error(grads32, grads16)
  assert 0 < error <= tol, (name, error, tol)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) for n in NAMES])
def test_bfloat16_train_step_with_vmapped_seeds_keeps_params_and_optimizer_float32(
    name, tiny_config):
  """One step, two vmapped seeds (the LSTM's runs in the default suite's training run)."""
  _require_field(name)
  config = tiny_config("configs/copy.py", f"{name},tiny")
  config.model.compute_dtype = "bfloat16"
  config.num_seeds = 2
  run = build.build_run(config)
  assert run.settings.model.compute_dtype == "bfloat16"
  step = steps.make_train_step(run.graphdef, run.constants, run.tx, run.settings.task,
                               config.batch_size, run.mesh)
  state = jax.device_get(step(run.state, run.keys["data"]))
  assert state.step.tolist() == [1, 1]
  for part in (state.params, state.opt_state):
    leaves = _float_leaves(part)
    assert leaves and all(x.dtype == jnp.float32 and x.shape[0] == 2 for x in leaves)
  loss = state.sums.loss
  assert np.isfinite(loss).all() and loss[0] != loss[1]  # two seeds, two models


def _train(config, num_steps: int) -> tuple[np.ndarray, steps.TrainState]:
  """(per-step train losses [steps, seeds], the final state) of `num_steps` steps."""
  run = build.build_run(config)
  step = steps.make_train_step(run.graphdef, run.constants, run.tx, run.settings.task,
                               config.batch_size, run.mesh)
  state, sums = run.state, [np.zeros(config.num_seeds)]
  for _ in range(num_steps):
    state = step(state, run.keys["data"])
    sums.append(np.asarray(jax.device_get(state.sums.loss)))
  return np.diff(np.stack(sums), axis=0), jax.device_get(state)


# 16 CPU-s for the LSTM alone: every model in the slow suite.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) for n in NAMES])
def test_short_bfloat16_training_run_loss_falls_like_float32(name, tiny_config):
  """80 steps of the tiny copy task: bfloat16's loss falls as float32's does.

  Measured (batch 32, seed 0; mean of the last 10 steps, float32 -> bfloat16): lstm 1.0368
  -> 1.0368, s6 1.1021 -> 1.1027, transformer 1.7096 -> 1.7099, from 2.2-3.6 at the start;
  every model within 0.06% of float32 and below 0.5 of its initial loss.

  The bfloat16 run trains two vmapped seeds; its seed 0 is the float32 run's model (same
  init, same batches), seed 1 another one. Its parameters and Adam moments stay float32.
  """
  _require_field(name)
  finals, initial, seed0 = {}, {}, {}
  for dtype, num_seeds in (("float32", 1), ("bfloat16", 2)):
    config = tiny_config("configs/copy.py", f"{name},tiny")
    config.model.compute_dtype = dtype
    config.batch_size, config.num_seeds = 32, num_seeds
    losses, state = _train(config, 80)
    assert np.isfinite(losses).all()
    initial[dtype], finals[dtype] = losses[:5, 0].mean(), losses[-10:, 0].mean()
    seed0[dtype] = losses[:, 0]
  print(f"{name}: initial {initial}, final (mean of the last 10 steps) {finals}")
  for dtype in finals:
    assert finals[dtype] < 0.7 * initial[dtype], (dtype, initial, finals)
  assert abs(finals["bfloat16"] - finals["float32"]) <= 0.10 * finals["float32"], finals
  assert not np.array_equal(seed0["float32"], seed0["bfloat16"])  # bfloat16 was used
  for part in (state.params, state.opt_state):  # the bfloat16 run's
    leaves = _float_leaves(part)
    assert leaves and all(x.dtype == jnp.float32 and x.shape[0] == 2 for x in leaves)
  assert not np.array_equal(losses[:, 0], losses[:, 1])  # two seeds, two models


@pytest.mark.parametrize("cell", [pytest.param(c, marks=() if c == DEFAULT_MODEL else
                                              pytest.mark.slow) for c in recurrent.CELLS])
@pytest.mark.parametrize("hoist", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_batched_weight_gradients_equal_autodiff_in_bfloat16(cell, hoist):
  """The custom VJP of `scans.scan_batched` against JAX's derivative, both in bfloat16."""
  x_BxTxI = jax.random.normal(jax.random.key(1), (3, 6, 5))
  grads = {}
  for form in ("batched", "autodiff"):
    settings = models.RecurrentSettings(cell=cell, hidden_size=8, hoist_input=hoist,
                                        weight_grads=form, compute_dtype="bfloat16")
    layer = recurrent.RecurrentLayer(settings, 5, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(layer)
    carry = layer.initial_carry(3)

    def loss(p, x):
      y_BxTxH, final = nnx.merge(graphdef, p)(x, carry)
      return (y_BxTxH ** 2).sum() + sum((c ** 2).sum() for c in jax.tree.leaves(final))

    grads[form] = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x_BxTxI)
  for g in jax.tree.leaves(grads["batched"]):
    assert g.dtype == jnp.float32
  # Same bfloat16 operands, float32 sums: they differ only by the order of the additions.
  assert _relative_error(grads["autodiff"], grads["batched"]) < U, cell


def test_mixed_matmul_gradient_reads_bfloat16_operands_and_returns_input_dtypes():
  x_NxI = jax.random.normal(jax.random.key(0), (2, 3, 4))
  w_IxO = jax.random.normal(jax.random.key(1), (4, 5))
  loss = lambda x, w: (precision.matmul(x, w, jnp.bfloat16) ** 2).sum()
  dx, dw = jax.grad(loss, argnums=(0, 1))(x_NxI, w_IxO)
  assert dx.dtype == dw.dtype == jnp.float32
  dx32, dw32 = jax.grad(lambda x, w: ((x @ w) ** 2).sum(), argnums=(0, 1))(x_NxI, w_IxO)
  assert 0 < _relative_error((dx32, dw32), (dx, dw)) < 4 * U
  count = flops.flop_count(jax.grad(loss, argnums=(0, 1)), x_NxI, w_IxO)
  assert count.matmul_by_dtype == {"bfloat16": 3 * 2 * 6 * 4 * 5}  # forward + two backward
  # Float32 is plain `x @ w`: the same values as before mixed precision existed.
  np.testing.assert_array_equal(precision.matmul(x_NxI, w_IxO, jnp.float32), x_NxI @ w_IxO)


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_compute_dtype_names_the_field_the_value_and_the_allowed_ones(name):
  _require_field(name)
  with pytest.raises(ValueError) as info:
    models.model_settings(name, compute_dtype="fp16")
  assert str(info.value) == ("model.compute_dtype='fp16': must be one of "
                             "('float32', 'bfloat16').")


def test_the_train_command_refuses_a_bad_compute_dtype_with_one_line_and_exit_2(
    tmp_path, train_command):
  result = subprocess.run(
      train_command(["--config=configs/copy.py:s6,tiny", "--config.model.compute_dtype=fp16",
                     f"--workdir={tmp_path / 'run'}"]),
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "model.compute_dtype='fp16'" in lines[0], lines
  assert "'float32', 'bfloat16'" in lines[0]
  assert not (tmp_path / "run").exists()


# Slow: a 2-device training subprocess costs about 30 s of CPU (the default suite's sharded
# run is tests/test_linear_recurrences.py's, in float32).
@pytest.mark.slow
@pytest.mark.parametrize("names", [pytest.param(list(NAMES), id="all")])
def test_bfloat16_runs_train_with_vmapped_seeds_on_two_sharded_devices(tmp_path, names,
                                                                       train_command):
  """The whole loop (train, eval, checkpoint, summary) in bfloat16, batch over 2 devices."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  for name in names:
    workdir = tmp_path / name
    result = subprocess.run(
        train_command([f"--config=configs/copy.py:{name},tiny", "--config.num_seeds=2",
                       "--config.model.compute_dtype=bfloat16", f"--workdir={workdir}"]),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["device"]["count"] == 2, summary["device"]
    losses = [m["loss"] for m in summary["eval_by_seed"].values()]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), (name, losses)
    assert losses[0] != losses[1], name
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"]["compute_dtype"] == "bfloat16"


def test_the_benchmark_has_a_bfloat16_row_per_model_and_measures_it_against_its_roof():
  s = BenchSettings(bfloat16=True, torch=False, variants=False)
  for name in NAMES:
    _require_field(name)
    assert baselines.ours(compute_dtype="bfloat16") in baselines.impls(name, s), name
  roofs = {"float32": {"flops_per_sec": 1e9}, "bfloat16": {"flops_per_sec": 4e9}}
  row = {"train_step_s": 1.0, "matmul_flops_per_step": 3e9,
         "matmul_flops_by_dtype": {"bfloat16": 2e9, "float32": 1e9}}
  # 2e9 FLOPs at 4e9 FLOP/s and 1e9 at 1e9 FLOP/s: 1.5 s at the roofs, in 1 s measured.
  assert harness.fraction_of_roof(row, roofs, roofs["float32"]) == pytest.approx(1.5)
  row = {"train_step_s": 2.0, "matmul_flops_per_step": 1e9}  # no split: the default roof
  assert harness.fraction_of_roof(row, roofs, roofs["bfloat16"]) == pytest.approx(0.125)
