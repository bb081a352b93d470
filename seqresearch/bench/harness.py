"""The timing harness: compiled train and forward steps, the timing loop, the roof, the machine.

Legend: B batch, T time (n), V vocabulary.

Every implementation is timed through the same `Runner` (train(k) / forward(k) run k steps and
return the wall seconds, results ready), with `time_loop` the one timing loop of the package.
FLOPs come from `seqresearch.analysis.flops` (the jaxpr walk that multiplies scan bodies by
their length; XLA's cost analysis counts them once).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from seqresearch import environment as env_lib
from seqresearch import evaluation
from seqresearch.analysis import flops


class Unavailable(Exception):
  """This implementation cannot run in this environment (the reason is the message)."""


@dataclasses.dataclass
class Runner:
  """One implementation at one size, compiled and holding its state.

  Attributes:
    train: train(k) runs k train steps and returns their wall seconds, results ready.
    forward: forward(k) the same for k forward passes.
    info: JSON-ready facts measured while building (compile_s, peak_memory_bytes, ...).
  """

  train: Callable[[int], float]
  forward: Callable[[int], float]
  info: dict[str, Any]


def time_loop(step: Callable[[], Any], num_steps: int,
              sync: Callable[[Any], Any] = jax.block_until_ready) -> float:
  """Wall seconds of `num_steps` calls of `step()`, waiting for the last result with `sync`.

  Dispatch is asynchronous in JAX: without `sync` the loop would time the dispatch only.
  A step that carries state keeps it in its closure.
  """
  if num_steps < 1:
    raise ValueError(f"num_steps={num_steps}: must be >= 1.")
  start = time.perf_counter()
  out = None
  for _ in range(num_steps):
    out = step()
  sync(out)
  return time.perf_counter() - start


def no_sync(_: Any) -> None:
  """`sync` for eager frameworks whose calls return when the work is done."""


def environment(torch_version: str | None = None) -> dict[str, Any]:
  """The machine and library versions a measurement ran on (JSON-ready).

  Args:
    torch_version: PyTorch's version, "unavailable" or "not run" (None: "not run").
  """
  device = env_lib.device()
  return {"backend": jax.default_backend(), "device_kind": device["kind"],
          "device_count": device["count"], "cpu_count": os.cpu_count(),
          "load_average_1min_start": os.getloadavg()[0],
          "machine": platform.machine(), "processor": platform.processor(),
          "versions": {**env_lib.versions(), "torch": torch_version or "not run"}}


def cross_entropy(logits_BxTxV: jax.Array, targets_BxT: jax.Array) -> jax.Array:
  """Mean -log p(target): the loss every JAX implementation is trained with (float32)."""
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), axis=-1)
  return evaluation.target_nll(logp_BxTxV, targets_BxT).mean()


def memory_bytes(compiled: Any) -> int | None:
  """Peak bytes XLA plans for one call: arguments + outputs - donated aliases + temporaries."""
  try:
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
               + m.temp_size_in_bytes)
  except Exception:  # pylint: disable=broad-except  (not every backend reports it)
    return None


def _adam_train_step(graphdef: Any, tx: optax.GradientTransformation) -> Callable[..., Any]:
  """train_step((params, opt_state), tokens_BxT, targets_BxT) -> (new state, loss)."""

  def train_step(state, tokens_BxT, targets_BxT):
    params, opt_state = state
    loss_fn = lambda p: cross_entropy(nnx.merge(graphdef, p)(tokens_BxT), targets_BxT)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  return train_step


def jax_runner(module: nnx.Module, tokens_BxT: jax.Array, targets_BxT: jax.Array) -> Runner:
  """Compiles the Adam train step (parameters and optimizer state donated) and the forward.

  Returns:
    A Runner whose info holds compile_s (= trace_lower_s + xla_compile_s), the planned peak
    memory of both programs, matmul_flops_per_step / forward_matmul_flops (counted on the
    jaxpr by `analysis.flops`), matmul_flops_by_dtype (the train step's matmul FLOPs by
    operand dtype, for `fraction_of_roof`), compute_dtype (the module's settings' field,
    'float32' when it has none) and num_params.
  """
  tx = optax.adam(1e-3)
  graphdef, params = nnx.split(module)
  state = (params, tx.init(params))
  train_step = _adam_train_step(graphdef, tx)

  def forward(params, tokens_BxT):
    return nnx.merge(graphdef, params)(tokens_BxT)

  step_count = flops.flop_count(train_step, state, tokens_BxT, targets_BxT, strict=False)
  settings = getattr(module, "settings", None)
  compute_dtype = getattr(settings, "compute_dtype", "float32")
  forward_flops = flops.matmul_flops(forward, params, tokens_BxT)
  t0 = time.perf_counter()
  lowered = jax.jit(train_step, donate_argnums=0).lower(state, tokens_BxT, targets_BxT)
  t1 = time.perf_counter()
  train_compiled = lowered.compile()
  t2 = time.perf_counter()
  forward_compiled = jax.jit(forward).lower(params, tokens_BxT).compile()
  box = {"state": state}

  def train_once():
    box["state"], loss = train_compiled(box["state"], tokens_BxT, targets_BxT)
    return loss

  info = {"compile_s": t2 - t0, "trace_lower_s": t1 - t0, "xla_compile_s": t2 - t1,
          "peak_memory_bytes": memory_bytes(train_compiled),
          "forward_peak_memory_bytes": memory_bytes(forward_compiled),
          "matmul_flops_per_step": step_count.matmul, "forward_matmul_flops": forward_flops,
          "matmul_flops_by_dtype": step_count.matmul_by_dtype, "compute_dtype": compute_dtype,
          "num_params": int(sum(x.size for x in jax.tree.leaves(params)))}
  return Runner(train=lambda k: time_loop(train_once, k),
                forward=lambda k: time_loop(
                    lambda: forward_compiled(box["state"][0], tokens_BxT), k),
                info=info)


def compile_seconds(module: nnx.Module, tokens_BxT: jax.Array) -> float:
  """Trace + lower + compile seconds of the Adam train step of `module` on tokens_BxT."""
  tx = optax.adam(1e-3)
  graphdef, params = nnx.split(module)
  train_step = _adam_train_step(graphdef, tx)
  t0 = time.perf_counter()
  jax.jit(train_step).lower((params, tx.init(params)), tokens_BxT, tokens_BxT).compile()
  return time.perf_counter() - t0


def time_interleaved(runners: Mapping[str, Runner], kind: str, repetitions: int,
                     min_rep_seconds: float) -> dict[str, list[float]]:
  """Seconds per step of each runner's `kind` ('train' or 'forward'), interleaved.

  One warm-up repetition per runner also sizes its repetitions (enough steps to last about
  `min_rep_seconds`, at most 50); then `repetitions` rounds run every runner once each, so a
  change of load hits all of them alike.
  """
  steps = {}
  for name, r in runners.items():
    first = getattr(r, kind)(1)
    steps[name] = max(1, min(50, math.ceil(min_rep_seconds / max(first, 1e-6))))
    getattr(r, kind)(steps[name])
  times: dict[str, list[float]] = {name: [] for name in runners}
  for _ in range(repetitions):
    for name, r in runners.items():
      times[name].append(getattr(r, kind)(steps[name]) / steps[name])
  return times


def default_roof_dtype() -> str:
  """float32 on the CPU, bfloat16 on accelerators (their matmul units' native type)."""
  return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def roof_dtypes(bfloat16: bool) -> tuple[str, ...]:
  """The dtypes whose matmul roof a benchmark measures: the default one, and bfloat16 when
  the bfloat16 rows are timed (each row is measured against the roof of its own dtype)."""
  return tuple(dict.fromkeys((default_roof_dtype(), "float32",
                              *(("bfloat16",) if bfloat16 else ()))))


def fraction_of_roof(row: Mapping[str, Any], roofs: Mapping[str, Mapping[str, Any]],
                     default: Mapping[str, Any]) -> float | None:
  """Model FLOP utilisation of a row: the seconds its matmuls would take at the roofs of
  their own dtypes, over the measured seconds of its train step.

  Args:
    row: a result row with train_step_s and matmul_flops_per_step, and optionally
      matmul_flops_by_dtype ({operand dtype: FLOPs}, from `analysis.flops`).
    roofs: {dtype: a `matmul_roof` result} measured in this run.
    default: the roof for FLOPs of a dtype with no measured roof (mixed operands, or a row
      without the split, e.g. PyTorch's, which has our FLOP count).

  Returns:
    The fraction (1.0: at the roof), or None without FLOPs or time.
  """
  total, seconds = row.get("matmul_flops_per_step"), row.get("train_step_s")
  if not total or not seconds:
    return None
  by_dtype = row.get("matmul_flops_by_dtype") or {None: total}
  ideal_s = sum(f / roofs.get(d, default)["flops_per_sec"] for d, f in by_dtype.items())
  return ideal_s / seconds


def matmul_roof(repetitions: int, dtype: str | None = None, n: int = 2048) -> dict[str, Any]:
  """FLOP/s of one large n x n matmul in `dtype` (default: `default_roof_dtype()`).

  Returns:
    n, dtype, seconds_all (every repetition), seconds (median), flops_per_sec (2 n^3 / s).
  """
  dtype = dtype or default_roof_dtype()
  a_NxN = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
  dot = jax.jit(jnp.dot).lower(a_NxN, a_NxN).compile()
  dot(a_NxN, a_NxN).block_until_ready()
  times = [time_loop(lambda: dot(a_NxN, a_NxN), 1) for _ in range(repetitions)]
  median = statistics.median(times)
  return {"n": n, "dtype": jnp.dtype(dtype).name, "seconds_all": times, "seconds": median,
          "flops_per_sec": 2 * n**3 / median}
