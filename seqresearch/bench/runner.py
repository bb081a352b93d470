"""The benchmark run: every implementation of every model at every length, then the extras.

    results = run_benchmark(BenchSettings(), runner_config=copy_config)  # a JSON-ready dict
    print(table.format_table(results))

Timing: everything at one size is compiled and warmed up first, then the implementations run
interleaved, `repetitions` times, each repetition long enough (`min_rep_seconds`) to swamp the
timer; every repetition is kept and medians are reported. On a shared machine only ratios
measured in the same run mean much. A part that fails (an implementation, the runner run, a
scaling child) becomes a row with status 'error' and its reason: the rest is still measured
and written. Legend: B batch, T time (n).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqresearch import host_memory
from seqresearch import metric_writer
from seqresearch import models
from seqresearch import workdir as workdir_lib
from seqresearch.bench import baselines
from seqresearch.bench import harness
from seqresearch.bench import scaling
from seqresearch.bench.settings import BenchSettings

SCHEMA_VERSION = 1


def _error_reason(e: BaseException) -> str:
  return f"{type(e).__name__}: {e}"[:500]


def measure_size(model: str, length: int, s: BenchSettings,
                 impls: tuple[baselines.Impl, ...] | None = None) -> list[dict[str, Any]]:
  """Implementations of `model` at one length: one JSON row each (README "Benchmark").

  Args:
    model: a name of `models.MODELS`.
    length: n.
    s: sizes and timing.
    impls: what to time; ours first (the speed-ups are relative to the first). Default:
      `baselines.impls(model, s)`.
  """
  keys = jax.random.split(jax.random.key(0), 3)
  tokens_BxT = jax.random.randint(keys[0], (s.batch_size, length), 0, s.vocab_size, jnp.int32)
  targets_BxT = jax.random.randint(keys[1], (s.batch_size, length), 0, s.vocab_size, jnp.int32)
  results, runners = {}, {}
  impls = baselines.impls(model, s) if impls is None else impls
  for impl in impls:
    row = {"model": model, "impl": impl.name, "batch_size": s.batch_size, "length": length,
           "width": s.width, "status": "ok", "reason": None}
    try:
      if impl.source == "torch":
        runner = baselines.torch_runner(model, s, np.asarray(tokens_BxT),
                                        np.asarray(targets_BxT))
      else:
        module = baselines.build_jax_model(model, impl, s, length, keys[2])
        runner = harness.jax_runner(module, tokens_BxT, targets_BxT)
      runners[impl.name] = runner
      row.update(runner.info)
    except harness.Unavailable as e:
      row.update(status="unavailable", reason=str(e))
    except Exception as e:  # pylint: disable=broad-except  (one failure must not stop the run)
      row.update(status="error", reason=_error_reason(e))
    results[impl.name] = row
  train_times = harness.time_interleaved(runners, "train", s.repetitions, s.min_rep_seconds)
  forward_times = harness.time_interleaved(runners, "forward", s.repetitions, s.min_rep_seconds)
  for name in runners:
    row = results[name]
    row["train_step_s_all"], row["forward_s_all"] = train_times[name], forward_times[name]
    row["train_step_s"] = statistics.median(train_times[name])
    row["forward_s"] = statistics.median(forward_times[name])
    row["tokens_per_sec"] = s.batch_size * length / row["train_step_s"]
  ours = results[impls[0].name]
  flops = ours.get("matmul_flops_per_step")
  for row in results.values():
    if row["status"] != "ok":
      continue
    # The same model math, counted on our jaxpr: PyTorch has no jaxpr, and cuDNN's fused
    # primitives are opaque to the jaxpr walk (it would count their matmuls as 0).
    if (row["impl"] == "torch" or row["impl"] in baselines.GPU_ONLY) and flops:
      row["matmul_flops_per_step"] = flops
      row["matmul_flops_by_dtype"] = None  # unknown: measured against the default roof
    if row.get("matmul_flops_per_step"):
      row["matmul_flops_per_sec"] = row["matmul_flops_per_step"] / row["train_step_s"]
    if ours["status"] == "ok":
      row["ours_speedup"] = ours["tokens_per_sec"] / row["tokens_per_sec"]
  return list(results.values())


def compile_scaling(model: str, s: BenchSettings) -> dict[str, Any]:
  """Our train step's compile seconds at each of `s.compile_lengths`, and longest/shortest."""
  times = {}
  for length in s.compile_lengths:
    module = baselines.build_jax_model(model, baselines.ours(), s, length, jax.random.key(0))
    times[length] = harness.compile_seconds(module, jnp.zeros((s.batch_size, length), jnp.int32))
  lo, hi = min(s.compile_lengths), max(s.compile_lengths)
  return {"model": model, "compile_s": {str(n): t for n, t in times.items()},
          "ratio_longest_to_shortest": times[hi] / times[lo]}


def runner_overhead(config: Any, repetitions: int) -> dict[str, Any]:
  """A full `train_and_evaluate` run's steps/s against the bare jitted step of the same config.

  Args:
    config: a run config (e.g. configs/copy.py:lstm); copied, not modified.
    repetitions: timed repetitions of the bare step (before and after the run, each).

  Returns:
    bare_steps_per_sec (median), runner_steps_per_sec_interval (median over the log
    intervals, leaving out the first, which includes compilation), runner_steps_per_sec_overall
    (all intervals after the first, eval and checkpoint pauses included) and their ratios;
    None where the run logged too few intervals to tell.
  """
  from seqresearch import train  # pylint: disable=g-import-not-at-top  (heavy: orbax)
  config = config.copy_and_resolve_references()
  config.progress_bar = False
  step, state, data_keys = scaling.bare_train_step(config, config.num_seeds)
  box = {"state": jax.block_until_ready(step(state, data_keys))}
  k = config.log_every_steps

  def one_step():
    box["state"] = step(box["state"], data_keys)
    return box["state"]

  bare = [k / harness.time_loop(one_step, k) for _ in range(repetitions)]
  with tempfile.TemporaryDirectory() as workdir:
    started = time.perf_counter()
    summary = train.train_and_evaluate(config, workdir)
    wall = time.perf_counter() - started
    lines = [m for m in metric_writer.read_metrics(workdir)
             if m["split"] == "train" and m.get("seed", config.seed) == config.seed]
  bare += [k / harness.time_loop(one_step, k) for _ in range(repetitions)]  # drift shows
  rates = [m["steps_per_sec"] for m in lines[1:]]
  spans = [(b["step"] - a["step"]) / b["steps_per_sec"] for a, b in zip(lines, lines[1:])]
  overall = (lines[-1]["step"] - lines[0]["step"]) / sum(spans) if spans else None
  bare_median = statistics.median(bare)
  interval = statistics.median(rates) if rates else None
  return {"model": config.model.name, "task": config.task.name,
          "batch_size": config.batch_size, "num_train_steps": config.num_train_steps,
          "log_every_steps": k, "eval_every_steps": config.eval_every_steps,
          "checkpoint_every_steps": config.checkpoint_every_steps,
          "bare_steps_per_sec_all": bare, "bare_steps_per_sec": bare_median,
          "runner_steps_per_sec_intervals": rates, "runner_steps_per_sec_interval": interval,
          "runner_steps_per_sec_overall": overall, "runner_wall_s": wall,
          "runner_final_step": summary["final_step"],
          "interval_ratio": None if interval is None else interval / bare_median,
          "overall_ratio": None if overall is None else overall / bare_median}


def guarded(measure: Callable[[], Any]) -> Any:
  """measure(), or {'status': 'error', 'reason': ...} when it raises: one part never loses
  the others."""
  try:
    return measure()
  except Exception as e:  # pylint: disable=broad-except
    return {"status": "error", "reason": _error_reason(e)}


def run_benchmark(s: BenchSettings, runner_config: Any = None,
                  log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
  """Runs everything `s` asks for and returns the JSON-ready results (see README "Benchmark").

  Args:
    s: what to measure.
    runner_config: the run config of the runner overhead and the scaling extras (None skips
      them).
    log: called with a line before each part.
  """
  applied = host_memory.configure(s.host_allocator, jax.default_backend())
  out: dict[str, Any] = {
      "schema_version": SCHEMA_VERSION, "settings": dataclasses.asdict(s),
      "environment": harness.environment(baselines.torch_version(s)),
      "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  out["environment"].update(host_allocator=applied, torch_threads=s.torch_threads)
  log("matmul roof")
  # One roof per dtype the rows compute in: a bfloat16 row is measured against the bfloat16
  # matmul roof, a float32 row against the float32 one (`harness.fraction_of_roof`).
  out["roofs"] = {d: harness.matmul_roof(s.repetitions, d)
                  for d in harness.roof_dtypes(s.bfloat16)}
  out["roof"] = out["roofs"][harness.default_roof_dtype()]
  out["results"] = []
  for model in s.models:
    for length in s.lengths:
      log(f"{model} n={length}")
      for row in measure_size(model, length, s):
        if row.get("matmul_flops_per_sec"):
          row["fraction_of_roof"] = harness.fraction_of_roof(row, out["roofs"], out["roof"])
        out["results"].append(row)
  out["compile_scaling"] = []
  recurrent = [m for m in s.models if models.entry(m).settings.is_recurrent]
  for model in recurrent if s.compile_lengths else ():
    log(f"{model} compile time over n={list(s.compile_lengths)}")
    row = guarded(lambda: compile_scaling(model, s))  # pylint: disable=cell-var-from-loop
    out["compile_scaling"].append({"model": model, **row})
  if runner_config is not None:
    out.update(_runner_extras(s, runner_config, log))
  out["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
  out["environment"]["load_average_1min_end"] = os.getloadavg()[0]
  return out


def _runner_extras(s: BenchSettings, runner_config: Any,
                   log: Callable[[str], None]) -> dict[str, Any]:
  """The runner overhead and the scaling measurements `s` asks for, each guarded."""
  out: dict[str, Any] = {}
  if s.runner_steps > 0:
    log("runner overhead")
    config = runner_config.copy_and_resolve_references()
    config.num_train_steps = s.runner_steps
    config.host_allocator = s.host_allocator
    out["runner"] = guarded(lambda: runner_overhead(config, s.repetitions))
  if s.seeds:
    log(f"{s.seeds} vmapped seeds vs {s.seeds} sequential runs")
    out["seeds_vmapped_vs_sequential"] = guarded(lambda: scaling.seeds_vmapped_vs_sequential(
        runner_config, s.seeds, repetitions=s.repetitions))
  if s.device_counts:
    log(f"steps/s on {list(s.device_counts)} devices")
    out["steps_per_sec_by_devices"] = guarded(lambda: scaling.steps_per_sec_by_devices(
        runner_config, s.device_counts, repetitions=s.repetitions))
  return out


def default_output_path(quick: bool) -> str:
  """benchmarks/<backend>[-quick].json, relative to the current directory."""
  return os.path.join("benchmarks", f"{jax.default_backend()}{'-quick' if quick else ''}.json")


def write_json(results: dict[str, Any], path: str) -> None:
  """Writes `results` atomically (`workdir.write_json`), creating the directory."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  workdir_lib.write_json(path, results)
