"""Speed of our models against the best in-ecosystem alternatives and PyTorch, in one run.

    results = run_benchmark(BenchSettings(), runner_config=copy_config)  # a JSON-ready dict
    print(format_table(results))

Every implementation is a token language model of the same shape, so the numbers compare the
layer that differs: Embed(V, E) -> body -> Linear(., V) -> cross-entropy against fixed random
targets, Adam. Bodies: our RecurrentLM / TransformerLM (one layer, the defaults the backend
resolves to, plus variants that force each fast path off), Flax's cells under `lax.scan`,
blocks built on `nnx.MultiHeadAttention` and on `jax.nn.dot_product_attention`, the cuDNN LSTM
of `jax.experimental.rnn` (GPU only) and PyTorch's `nn.RNN/LSTM/GRU/TransformerEncoderLayer`
(imported lazily; "unavailable" when not installed).

Timing: everything at one size is compiled and warmed up first, then the implementations run
interleaved, `repetitions` times, each repetition long enough (`min_rep_seconds`) to swamp the
timer; we keep every repetition and report medians. On a shared machine only ratios measured in
the same run mean much. Legend: B batch, T time (n), D width, E embedding, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from seqresearch import evaluation
from seqresearch import host_memory
from seqresearch import models

RECURRENT = ("rnn", "lstm", "gru")
MODELS = (*RECURRENT, "transformer")
# Implementations compared per model; "ours" runs with the backend's resolved defaults and
# "ours[field=value]" with one fast path forced to its reference form.
BASELINES = {
    "rnn": ("flax_simple_cell", "torch"),
    "lstm": ("flax_optimized_lstm", "flax_lstm", "jax_cudnn_lstm", "torch"),
    "gru": ("flax_gru", "torch"),
    "transformer": ("flax_mha", "jax_dpa_xla", "jax_dpa_cudnn", "torch"),
}
# Each fast path forced to its other form (CPU defaults); the last is the plain reference.
_RECURRENT_VARIANTS = (dict(hoist_input=True), dict(weight_grads="autodiff"),
                       dict(weight_grads="autodiff", hoist_input=False))
VARIANTS = {"rnn": _RECURRENT_VARIANTS, "lstm": _RECURRENT_VARIANTS, "gru": _RECURRENT_VARIANTS,
            "transformer": (dict(mlp="autodiff"), dict(attention="xla"),
                            dict(attention="vmap", mlp="autodiff"))}


@dataclasses.dataclass(frozen=True)
class BenchSettings:
  """What to measure.

  Attributes:
    models: subset of MODELS.
    batch_size: B. width: D (recurrent hidden size, Transformer d_model).
    lengths: sequence lengths n to time.
    embed_dim: E of the recurrent models (the Transformer embeds to D).
    num_heads, mlp_dim: Transformer layer shape.
    vocab_size: V of the token LM around each body.
    repetitions: timed repetitions per measurement (after a warm-up one); medians reported.
    min_rep_seconds: each repetition runs enough steps to last about this long.
    variants: also time "ours" with each fast path forced to its reference form.
    torch: include PyTorch (if importable); torch_threads: its intra-op threads.
    compile_lengths: lengths at which the recurrent models' train-step compile time is taken.
    runner_steps: steps of the full training run for the runner overhead (0 skips it).
    host_allocator: seqresearch.host_memory mode for the whole process (every implementation,
      PyTorch included, runs under it); 'auto' is the runner's default.
  """

  models: tuple[str, ...] = MODELS
  batch_size: int = 64
  width: int = 256
  lengths: tuple[int, ...] = (64, 256, 1024)
  embed_dim: int = 64
  num_heads: int = 4
  mlp_dim: int = 1024
  vocab_size: int = 16
  repetitions: int = 5
  min_rep_seconds: float = 0.3
  variants: bool = True
  torch: bool = True
  torch_threads: int = 2
  compile_lengths: tuple[int, ...] = (64, 4096)
  runner_steps: int = 400
  host_allocator: str = "auto"

  def __post_init__(self) -> None:
    host_memory.check(self.host_allocator)
    unknown = sorted(set(self.models) - set(MODELS))
    if unknown:
      raise ValueError(f"models={list(self.models)}: unknown {unknown}; allowed: {MODELS}.")
    if self.repetitions < 5:
      raise ValueError(f"repetitions={self.repetitions}: must be >= 5 (medians of >= 5).")
    if self.width % self.num_heads:
      raise ValueError(f"num_heads={self.num_heads} must divide width={self.width}.")


QUICK = dict(lengths=(64,), variants=False, compile_lengths=(64, 1024), runner_steps=200,
             min_rep_seconds=0.2)


# ---------------------------------------------------------------- JAX implementations


class _FlaxRecurrentLM(nnx.Module):
  """Embed(V, E) -> a Flax cell under `jax.lax.scan` -> Linear(H, V)."""

  def __init__(self, cell: nnx.Module, vocab: int, embed: int, hidden: int, *, rngs: nnx.Rngs):
    self.embedding = nnx.Embed(vocab, embed, rngs=rngs)
    self.cell = cell
    self.readout = nnx.Linear(hidden, vocab, rngs=rngs)
    self.hidden = hidden

  def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
    x_TxBxE = jnp.swapaxes(self.embedding(tokens_BxT), 0, 1)
    h_BxH = jnp.zeros((tokens_BxT.shape[0], self.hidden), jnp.float32)
    carry = (h_BxH, h_BxH) if isinstance(self.cell, (nnx.LSTMCell, nnx.OptimizedLSTMCell)) \
        else h_BxH
    graphdef, state = nnx.split(self.cell)  # a pure body: merge inside, no module in the scan

    def body(carry, x_BxE):
      return nnx.merge(graphdef, state)(carry, x_BxE)

    _, y_TxBxH = jax.lax.scan(body, carry, x_TxBxE)
    return self.readout(jnp.swapaxes(y_TxBxH, 0, 1))


class _CudnnLSTMLM(nnx.Module):
  """Embed(V, E) -> `jax.experimental.rnn.lstm` (cuDNN; GPU only) -> Linear(H, V)."""

  def __init__(self, vocab: int, embed: int, hidden: int, *, rngs: nnx.Rngs):
    from jax.experimental import rnn  # pylint: disable=g-import-not-at-top
    self.embedding = nnx.Embed(vocab, embed, rngs=rngs)
    self.weights = nnx.Param(rnn.init_lstm_weight(rngs.params(), embed, hidden, 1, False))
    self.readout = nnx.Linear(hidden, vocab, rngs=rngs)
    self.embed_dim, self.hidden = embed, hidden

  def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
    from jax.experimental import rnn  # pylint: disable=g-import-not-at-top
    b, t = tokens_BxT.shape
    h_1xBxH = jnp.zeros((1, b, self.hidden), jnp.float32)
    y_BxTxH, _, _ = rnn.lstm(self.embedding(tokens_BxT), h_1xBxH, h_1xBxH, self.weights[...],
                             jnp.full((b,), t, jnp.int32), self.embed_dim, self.hidden, 1,
                             0.0, False)
    return self.readout(y_BxTxH)


class _BaselineBlockLM(nnx.Module):
  """Embed(V, D) -> pre-LN block (attention by `attention`, erf-GELU MLP) -> LN -> Linear(D, V).

  attention: 'flax_mha' (nnx.MultiHeadAttention with a causal mask), or 'xla' / 'cudnn'
  (our fused QKV projection, then `jax.nn.dot_product_attention(is_causal=True)`).
  """

  def __init__(self, attention: str, vocab: int, d: int, heads: int, mlp: int, *,
               rngs: nnx.Rngs):
    self.attention, self.heads = attention, heads
    self.embedding = nnx.Embed(vocab, d, rngs=rngs)
    self.attn_norm, self.mlp_norm, self.final_norm = (nnx.LayerNorm(d, rngs=rngs)
                                                      for _ in range(3))
    if attention == "flax_mha":
      self.mha = nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs)
    else:
      self.qkv_proj = nnx.Linear(d, 3 * d, rngs=rngs)
      self.out_proj = nnx.Linear(d, d, rngs=rngs)
    self.mlp_in, self.mlp_out = nnx.Linear(d, mlp, rngs=rngs), nnx.Linear(mlp, d, rngs=rngs)
    self.readout = nnx.Linear(d, vocab, rngs=rngs)

  def _attend(self, x_BxTxD: jax.Array) -> jax.Array:
    b, t, d = x_BxTxD.shape
    if self.attention == "flax_mha":
      return self.mha(x_BxTxD, mask=nnx.make_causal_mask(jnp.ones((b, t))))
    q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = jnp.split(
        self.qkv_proj(x_BxTxD).reshape(b, t, 3 * self.heads, d // self.heads), 3, axis=2)
    out_BxTxHxK = jax.nn.dot_product_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, is_causal=True,
                                               implementation=self.attention)
    return self.out_proj(out_BxTxHxK.reshape(b, t, d))

  def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
    x_BxTxD = self.embedding(tokens_BxT)
    x_BxTxD = x_BxTxD + self._attend(self.attn_norm(x_BxTxD))
    f_BxTxF = jax.nn.gelu(self.mlp_in(self.mlp_norm(x_BxTxD)), approximate=False)
    x_BxTxD = x_BxTxD + self.mlp_out(f_BxTxF)
    return self.readout(self.final_norm(x_BxTxD))


def _parse_impl(impl: str) -> tuple[str, dict[str, Any]]:
  """'ours[weight_grads=autodiff]' -> ('ours', {'weight_grads': 'autodiff'})."""
  if "[" not in impl:
    return impl, {}
  base, _, rest = impl.partition("[")
  fields = {}
  for item in rest.rstrip("]").split(","):
    key, _, value = item.partition("=")
    value = int(value) if value.isdigit() else value
    fields[key] = {"True": True, "False": False}.get(value, value)
  return base, fields


def _variant_name(fields: dict[str, Any]) -> str:
  return "ours[" + ",".join(f"{k}={v}" for k, v in fields.items()) + "]"


def build_jax_model(model: str, impl: str, s: BenchSettings, length: int,
                    key: jax.Array) -> nnx.Module:
  """The JAX module of `impl` for `model`; raises _Unavailable when it cannot run here."""
  base, fields = _parse_impl(impl)
  rngs, v, d = nnx.Rngs(key), s.vocab_size, s.width
  if base == "ours":
    if model in RECURRENT:
      settings = models.model_settings(model, embed_dim=s.embed_dim, hidden_size=d, **fields)
    else:
      settings = models.model_settings(
          "transformer", d_model=d, num_heads=s.num_heads, num_layers=1, mlp_dim=s.mlp_dim,
          pos_encoding="none", max_len=max(length, 1), **fields)
    return models.build_model(settings, vocab_size=v, rngs=rngs)
  gpu_only = {"jax_cudnn_lstm", "jax_dpa_cudnn"}
  if base in gpu_only and jax.default_backend() != "gpu":
    raise _Unavailable("needs a GPU (cuDNN)")
  cells = {"flax_simple_cell": nnx.SimpleCell, "flax_optimized_lstm": nnx.OptimizedLSTMCell,
           "flax_lstm": nnx.LSTMCell, "flax_gru": nnx.GRUCell}
  if base in cells:
    cell = cells[base](s.embed_dim, d, rngs=rngs)
    return _FlaxRecurrentLM(cell, v, s.embed_dim, d, rngs=rngs)
  if base == "jax_cudnn_lstm":
    return _CudnnLSTMLM(v, s.embed_dim, d, rngs=rngs)
  attention = {"flax_mha": "flax_mha", "jax_dpa_xla": "xla", "jax_dpa_cudnn": "cudnn"}
  if base in attention:
    return _BaselineBlockLM(attention[base], v, d, s.num_heads, s.mlp_dim, rngs=rngs)
  raise ValueError(f"unknown implementation {impl!r} for model {model!r}")


class _Unavailable(Exception):
  """This implementation cannot run in this environment (reason in the message)."""


# ---------------------------------------------------------------- FLOPs


def matmul_flops(jaxpr: jax.extend.core.Jaxpr) -> int:
  """2*M*N*K summed over every dot_general, scan bodies counted `length` times.

  XLA's cost_analysis() counts a scan (while loop) body once; walking the jaxpr does not.
  Elementwise work is left out: the roof we compare with is a matmul's.
  """
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (lhs_contract, _), (lhs_batch, _) = eqn.params["dimension_numbers"]
      lhs, out = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
      total += 2 * math.prod(out) * math.prod(lhs[i] for i in lhs_contract)
      del lhs_batch  # batch dims are already in the output's size
      continue
    subs = [p for p in eqn.params.values()
            if isinstance(p, (jax.extend.core.Jaxpr, jax.extend.core.ClosedJaxpr))]
    subs += [b for p in eqn.params.values() if isinstance(p, tuple)
             for b in p if isinstance(b, (jax.extend.core.Jaxpr, jax.extend.core.ClosedJaxpr))]
    counts = [matmul_flops(getattr(j, "jaxpr", j)) for j in subs]
    if eqn.primitive.name == "scan":
      total += eqn.params["length"] * sum(counts)
    elif eqn.primitive.name == "cond":
      total += max(counts, default=0)
    else:
      total += sum(counts)
  return total


# ---------------------------------------------------------------- timing harness


@dataclasses.dataclass
class _Runner:
  """One implementation at one size, compiled and holding its state.

  train(k) / forward(k) run k steps and return the wall seconds, results ready.
  """

  train: Callable[[int], float]
  forward: Callable[[int], float]
  info: dict[str, Any]


def _cross_entropy(logits_BxTxV: jax.Array, targets_BxT: jax.Array) -> jax.Array:
  """The runner's loss (every implementation gets the same one)."""
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), axis=-1)
  return evaluation.target_nll(logp_BxTxV, targets_BxT).mean()


def _memory_bytes(compiled: Any) -> int | None:
  """Peak bytes XLA plans for one call: arguments + outputs - donated aliases + temporaries."""
  try:
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
               + m.temp_size_in_bytes)
  except Exception:  # pylint: disable=broad-except  (not every backend reports it)
    return None


def jax_runner(module: nnx.Module, tokens_BxT: jax.Array, targets_BxT: jax.Array) -> _Runner:
  """Compiles the Adam train step (params and optimizer state donated) and the forward."""
  tx = optax.adam(1e-3)
  graphdef, params = nnx.split(module)
  state = (params, tx.init(params))

  def train_step(state, tokens_BxT, targets_BxT):
    params, opt_state = state
    loss_fn = lambda p: _cross_entropy(nnx.merge(graphdef, p)(tokens_BxT), targets_BxT)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  def forward(params, tokens_BxT):
    return nnx.merge(graphdef, params)(tokens_BxT)

  t0 = time.perf_counter()
  lowered = jax.jit(train_step, donate_argnums=0).lower(state, tokens_BxT, targets_BxT)
  t1 = time.perf_counter()
  train_compiled = lowered.compile()
  t2 = time.perf_counter()
  forward_compiled = jax.jit(forward).lower(params, tokens_BxT).compile()
  flops = matmul_flops(jax.make_jaxpr(train_step)(state, tokens_BxT, targets_BxT).jaxpr)
  fwd_flops = matmul_flops(jax.make_jaxpr(forward)(params, tokens_BxT).jaxpr)
  box = {"state": state}

  def run_train(k: int) -> float:
    start = time.perf_counter()
    for _ in range(k):
      box["state"], loss = train_compiled(box["state"], tokens_BxT, targets_BxT)
    loss.block_until_ready()
    return time.perf_counter() - start

  def run_forward(k: int) -> float:
    start = time.perf_counter()
    for _ in range(k):
      out = forward_compiled(box["state"][0], tokens_BxT)
    out.block_until_ready()
    return time.perf_counter() - start

  info = {"compile_s": t2 - t0, "trace_lower_s": t1 - t0, "xla_compile_s": t2 - t1,
          "peak_memory_bytes": _memory_bytes(train_compiled),
          "forward_peak_memory_bytes": _memory_bytes(forward_compiled),
          "matmul_flops_per_step": flops, "forward_matmul_flops": fwd_flops,
          "num_params": int(sum(x.size for x in jax.tree.leaves(params)))}
  return _Runner(run_train, run_forward, info)


def compile_seconds(module: nnx.Module, tokens_BxT: jax.Array) -> float:
  """Trace + lower + compile time of the Adam train step of `module` on tokens_BxT."""
  tx = optax.adam(1e-3)
  graphdef, params = nnx.split(module)

  def train_step(state, tokens_BxT):
    loss_fn = lambda p: _cross_entropy(nnx.merge(graphdef, p)(tokens_BxT), tokens_BxT)
    loss, grads = jax.value_and_grad(loss_fn)(state[0])
    updates, opt_state = tx.update(grads, state[1], state[0])
    return (optax.apply_updates(state[0], updates), opt_state), loss

  t0 = time.perf_counter()
  jax.jit(train_step).lower((params, tx.init(params)), tokens_BxT).compile()
  return time.perf_counter() - t0


def _import_torch(threads: int) -> Any:
  """torch, set to `threads` intra-op threads; _Unavailable when it is not installed."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise _Unavailable(f"torch not importable ({e})") from None
  torch.set_num_threads(threads)
  return torch


def torch_runner(model: str, s: BenchSettings, tokens: np.ndarray,
                 targets: np.ndarray) -> _Runner:
  """PyTorch's own layer in the same LM around it, eager, Adam (foreach default), CPU."""
  torch = _import_torch(s.torch_threads)
  nn = torch.nn
  torch.manual_seed(0)
  v, d = s.vocab_size, s.width
  if model in RECURRENT:
    rnn_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[model]
    body = rnn_cls(s.embed_dim, d, batch_first=True)
    layers = [nn.Embedding(v, s.embed_dim), body, nn.Linear(d, v)]

    def apply(tokens):
      x = layers[0](tokens)
      return layers[2](layers[1](x)[0])
  else:
    layer = nn.TransformerEncoderLayer(d, s.num_heads, s.mlp_dim, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
    layers = [nn.Embedding(v, d), layer, nn.LayerNorm(d), nn.Linear(d, v)]
    mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1])

    def apply(tokens):
      x = layers[1](layers[0](tokens), src_mask=mask, is_causal=True)
      return layers[3](layers[2](x))
  net = nn.ModuleList(layers)
  opt = torch.optim.Adam(net.parameters(), lr=1e-3)
  tokens_t = torch.tensor(tokens, dtype=torch.long)
  targets_t = torch.tensor(targets, dtype=torch.long).reshape(-1)

  def run_train(k: int) -> float:
    start = time.perf_counter()
    for _ in range(k):
      opt.zero_grad(set_to_none=True)
      loss = nn.functional.cross_entropy(apply(tokens_t).reshape(-1, v), targets_t)
      loss.backward()
      opt.step()
    return time.perf_counter() - start

  def run_forward(k: int) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
      for _ in range(k):
        apply(tokens_t)
    return time.perf_counter() - start

  info = {"compile_s": 0.0, "peak_memory_bytes": None,
          "num_params": int(sum(p.numel() for p in net.parameters()))}
  return _Runner(run_train, run_forward, info)


def _time_interleaved(runners: dict[str, _Runner], kind: str, s: BenchSettings
                      ) -> dict[str, list[float]]:
  """Seconds per step of each runner: one warm-up repetition, then `repetitions` rounds."""
  steps = {}
  for name, r in runners.items():  # warm-up, and the step count that fills min_rep_seconds
    first = getattr(r, kind)(1)
    steps[name] = max(1, min(50, math.ceil(s.min_rep_seconds / max(first, 1e-6))))
    getattr(r, kind)(steps[name])
  times = {name: [] for name in runners}
  for _ in range(s.repetitions):
    for name, r in runners.items():
      times[name].append(getattr(r, kind)(steps[name]) / steps[name])
  return times


def measure_size(model: str, length: int, s: BenchSettings) -> list[dict[str, Any]]:
  """Every implementation of `model` at one length: one result dict each."""
  keys = jax.random.split(jax.random.key(0), 3)
  tokens_BxT = jax.random.randint(keys[0], (s.batch_size, length), 0, s.vocab_size, jnp.int32)
  targets_BxT = jax.random.randint(keys[1], (s.batch_size, length), 0, s.vocab_size, jnp.int32)
  impls = ["ours"]
  if s.variants:
    impls += [_variant_name(f) for f in VARIANTS[model]]
  impls += [b for b in BASELINES[model] if s.torch or b != "torch"]
  results, runners = {}, {}
  for impl in impls:
    row = {"model": model, "impl": impl, "batch_size": s.batch_size, "length": length,
           "width": s.width, "status": "ok", "reason": None}
    try:
      if impl == "torch":
        runners[impl] = torch_runner(model, s, np.asarray(tokens_BxT), np.asarray(targets_BxT))
      else:
        module = build_jax_model(model, impl, s, length, keys[2])
        runners[impl] = jax_runner(module, tokens_BxT, targets_BxT)
      row.update(runners[impl].info)
    except _Unavailable as e:
      row.update(status="unavailable", reason=str(e))
    except Exception as e:  # pylint: disable=broad-except  (one failure must not stop the run)
      row.update(status="error", reason=f"{type(e).__name__}: {e}"[:500])
    results[impl] = row
  train_times = _time_interleaved(runners, "train", s)
  forward_times = _time_interleaved(runners, "forward", s)
  for impl in runners:
    row = results[impl]
    row["train_step_s_all"], row["forward_s_all"] = train_times[impl], forward_times[impl]
    row["train_step_s"] = statistics.median(train_times[impl])
    row["forward_s"] = statistics.median(forward_times[impl])
    row["tokens_per_sec"] = s.batch_size * length / row["train_step_s"]
  ours = results["ours"]
  flops = ours.get("matmul_flops_per_step")
  for row in results.values():
    if row["status"] != "ok":
      continue
    if row["impl"] == "torch" and flops:  # same model math: count it from our jaxpr
      row["matmul_flops_per_step"] = flops
    if row.get("matmul_flops_per_step"):
      row["matmul_flops_per_sec"] = row["matmul_flops_per_step"] / row["train_step_s"]
    if ours["status"] == "ok":
      row["ours_speedup"] = ours["tokens_per_sec"] / row["tokens_per_sec"]
  return list(results.values())


def matmul_roof(repetitions: int) -> dict[str, Any]:
  """FLOP/s of one large matmul: 2048x2048 float32 on CPU, bfloat16 on accelerators."""
  n = 2048
  dtype = jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  dot = jax.jit(jnp.dot).lower(a, a).compile()
  dot(a, a).block_until_ready()
  times = []
  for _ in range(repetitions):
    start = time.perf_counter()
    dot(a, a).block_until_ready()
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  return {"n": n, "dtype": jnp.dtype(dtype).name, "seconds_all": times, "seconds": median,
          "flops_per_sec": 2 * n**3 / median}


# ---------------------------------------------------------------- runner overhead


def runner_overhead(config: Any, repetitions: int) -> dict[str, Any]:
  """A full `train_and_evaluate` run's steps/s against the bare jitted step of the same config.

  Args:
    config: a run config (e.g. configs/copy.py:lstm); copied, not modified.
    repetitions: timed repetitions of the bare step (before and after the run, each).

  Returns:
    bare_steps_per_sec (median), runner_steps_per_sec_interval (median over the log
    intervals, leaving out the first, which includes compilation), runner_steps_per_sec_overall
    (all intervals after the first, eval and checkpoint pauses included) and their ratios.
  """
  from seqresearch import build, metric_writer, steps, train  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  config.progress_bar = False
  # The same pieces train_and_evaluate builds, timed without the loop around them.
  run = build.validate_run(config, num_devices=jax.device_count())
  mesh = steps.data_mesh()
  keys = steps.seed_keys(config.seed, config.num_seeds)
  tx = build.make_optimizer(config.optimizer, config.num_train_steps)
  graphdef, constants, state = steps.init_state(run.model, run.vocab_size, tx, keys["init"])
  state = steps.replicate(state, mesh)
  step = steps.make_train_step(graphdef, constants, tx, run.task, config.batch_size, mesh)
  state = jax.block_until_ready(step(state, keys["data"]))
  k = config.log_every_steps

  def bare_rate() -> float:
    nonlocal state
    start = time.perf_counter()
    for _ in range(k):
      state = step(state, keys["data"])
    jax.block_until_ready(state)
    return k / (time.perf_counter() - start)

  bare = [bare_rate() for _ in range(repetitions)]
  with tempfile.TemporaryDirectory() as workdir:
    started = time.perf_counter()
    summary = train.train_and_evaluate(config, workdir)
    wall = time.perf_counter() - started
    lines = [m for m in metric_writer.read_metrics(workdir)
             if m["split"] == "train" and m.get("seed", config.seed) == config.seed]
  bare += [bare_rate() for _ in range(repetitions)]  # before and after: drift shows up
  rates = [m["steps_per_sec"] for m in lines[1:]]
  spans = [(b["step"] - a["step"]) / b["steps_per_sec"] for a, b in zip(lines, lines[1:])]
  overall = (lines[-1]["step"] - lines[0]["step"]) / sum(spans) if spans else float("nan")
  bare_median = statistics.median(bare)
  interval = statistics.median(rates) if rates else float("nan")
  return {"model": config.model.name, "task": config.task.name,
          "batch_size": config.batch_size, "num_train_steps": config.num_train_steps,
          "log_every_steps": k, "eval_every_steps": config.eval_every_steps,
          "checkpoint_every_steps": config.checkpoint_every_steps,
          "bare_steps_per_sec_all": bare, "bare_steps_per_sec": bare_median,
          "runner_steps_per_sec_intervals": rates, "runner_steps_per_sec_interval": interval,
          "runner_steps_per_sec_overall": overall, "runner_wall_s": wall,
          "runner_final_step": summary["final_step"],
          "interval_ratio": interval / bare_median, "overall_ratio": overall / bare_median}


# ---------------------------------------------------------------- the whole run


def environment(s: BenchSettings) -> dict[str, Any]:
  """Device and versions, torch included ("unavailable" when it is not installed)."""
  import jaxlib  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  versions = {"python": platform.python_version(), "jax": jax.__version__,
              "jaxlib": jaxlib.__version__, "flax": flax.__version__,
              "optax": optax.__version__, "numpy": np.__version__}
  try:
    versions["torch"] = _import_torch(s.torch_threads).__version__ if s.torch else "not run"
  except _Unavailable:
    versions["torch"] = "unavailable"
  return {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
          "load_average_1min_start": os.getloadavg()[0],
          "machine": platform.machine(), "processor": platform.processor(),
          "torch_threads": s.torch_threads, "versions": versions}


def run_benchmark(s: BenchSettings, runner_config: Any = None,
                  log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
  """Runs everything `s` asks for and returns the JSON-ready results (see the README)."""
  applied = host_memory.configure(s.host_allocator, jax.default_backend())
  out = {"schema_version": 1, "settings": dataclasses.asdict(s), "environment": environment(s),
         "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  out["environment"]["host_allocator"] = applied
  log("matmul roof")
  out["roof"] = matmul_roof(s.repetitions)
  out["results"] = []
  for model in s.models:
    for length in s.lengths:
      log(f"{model} n={length}")
      rows = measure_size(model, length, s)
      for row in rows:
        if row.get("matmul_flops_per_sec"):
          row["fraction_of_roof"] = row["matmul_flops_per_sec"] / out["roof"]["flops_per_sec"]
      out["results"] += rows
  out["compile_scaling"] = []
  for model in (m for m in s.models if m in RECURRENT):
    log(f"{model} compile time over n={list(s.compile_lengths)}")
    times = {}
    for length in s.compile_lengths:
      module = build_jax_model(model, "ours", s, length, jax.random.key(0))
      tokens_BxT = jnp.zeros((s.batch_size, length), jnp.int32)
      times[length] = compile_seconds(module, tokens_BxT)
    lo, hi = min(s.compile_lengths), max(s.compile_lengths)
    out["compile_scaling"].append({"model": model, "compile_s": {str(n): t for n, t in
                                                                 times.items()},
                                   "ratio_longest_to_shortest": times[hi] / times[lo]})
  if runner_config is not None and s.runner_steps > 0:
    log("runner overhead")
    config = runner_config.copy_and_resolve_references()
    config.num_train_steps = s.runner_steps
    config.host_allocator = s.host_allocator
    out["runner"] = runner_overhead(config, s.repetitions)
  out["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
  out["environment"]["load_average_1min_end"] = os.getloadavg()[0]
  return out


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
  return "-" if value is None else format(value * scale, spec)


def format_table(results: dict[str, Any]) -> str:
  """The human-readable table of `run_benchmark`'s results."""
  roof = results["roof"]
  env = results["environment"]
  lines = [f"{env['backend']} ({env['device_kind']}, {env['cpu_count']} CPUs), jax "
           f"{env['versions']['jax']}, flax {env['versions']['flax']}, torch "
           f"{env['versions']['torch']}; roof: {roof['n']}^2 {roof['dtype']} matmul "
           f"{roof['flops_per_sec'] / 1e9:.1f} GFLOP/s; host allocator "
           f"{env.get('host_allocator', 'system')}",
           "train = Adam step fwd+bwd; ours/x = our tokens/s over this one's; "
           f"medians of {results['settings']['repetitions']}; load average "
           f"{env['load_average_1min_start']:.1f} -> {env.get('load_average_1min_end', 0):.1f}"
           + (" (above the CPU count: a shared machine; trust ratios, not absolutes; PyTorch's"
              " spinning threads suffer most)"
              if max(env["load_average_1min_start"], env.get("load_average_1min_end", 0))
              > env["cpu_count"] else ""),
           f"{'model':<11} {'n':>5} {'impl':<36} {'train ms':>9} {'ktok/s':>8} {'fwd ms':>8} "
           f"{'compile s':>9} {'mem MB':>8} {'GFLOP/s':>8} {'roof':>5} {'ours/x':>6}"]
  for r in results["results"]:
    if r["status"] != "ok":
      lines.append(f"{r['model']:<11} {r['length']:>5} {r['impl']:<36} {r['status']}: "
                   f"{r['reason']}")
      continue
    lines.append(
        f"{r['model']:<11} {r['length']:>5} {r['impl']:<36} {r['train_step_s'] * 1e3:>9.1f} "
        f"{r['tokens_per_sec'] / 1e3:>8.1f} {r['forward_s'] * 1e3:>8.2f} "
        f"{_fmt(r.get('compile_s'), '9.2f')} {_fmt(r.get('peak_memory_bytes'), '8.1f', 1e-6)} "
        f"{_fmt(r.get('matmul_flops_per_sec'), '8.1f', 1e-9)} "
        f"{_fmt(r.get('fraction_of_roof'), '5.2f')} {_fmt(r.get('ours_speedup'), '6.2f')}")
  for c in results.get("compile_scaling", []):
    times = ", ".join(f"n={n}: {t:.2f}s" for n, t in c["compile_s"].items())
    lines.append(f"compile time of ours/{c['model']} train step: {times} "
                 f"(ratio {c['ratio_longest_to_shortest']:.2f})")
  if "runner" in results:
    r = results["runner"]
    lines.append(
        f"runner ({r['task']}/{r['model']}, {r['num_train_steps']} steps): bare step "
        f"{r['bare_steps_per_sec']:.1f} steps/s; train_and_evaluate "
        f"{r['runner_steps_per_sec_interval']:.1f} steps/s between logs "
        f"({r['interval_ratio']:.3f}x), {r['runner_steps_per_sec_overall']:.1f} overall with "
        f"eval and checkpoints ({r['overall_ratio']:.3f}x)")
  return "\n".join(lines)


def default_output_path(quick: bool) -> str:
  """benchmarks/<backend>[-quick].json, relative to the current directory."""
  return os.path.join("benchmarks", f"{jax.default_backend()}{'-quick' if quick else ''}.json")


def write_json(results: dict[str, Any], path: str) -> None:
  """Writes atomically (a temporary file, then rename), creating the directory."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(results, f, indent=1)
  os.replace(tmp, path)
