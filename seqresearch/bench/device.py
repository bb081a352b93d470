"""The prepared accelerator check behind scripts/device_check.py: one command, one JSON, a table.

On a GPU (at most about 8 minutes on one device) it runs, each part timed and guarded:
  gpu_tests  the `gpu`-marked tests (cuDNN LSTM and attention against ours, sharding);
  bench      `bench.py --quick` with the GPU rows (cuDNN LSTM, cuDNN attention, bfloat16
             where the models have `compute_dtype`), against the measured bfloat16 matmul roof;
  targets    the issue-17 targets at their sizes: Transformer layer model FLOP utilisation at
             n = 4096, d = 1024; our LSTM against cuDNN's at n = 1024, B = 256, d = 1024
             (the bench part also times sequential against associative scan for the
             models that have both);
  main_job   the README's main job (its config, full length), accuracy and wall time;
  seeds      K = 8 vmapped seeds against 8 sequential runs of the main job's step.
On the CPU the same code runs at tiny sizes (a subset, under 2 minutes on an idle 2-core
machine): it checks the plumbing, and its numbers mean nothing. A part that fails or does not
fit the time budget is recorded with its status and reason; the JSON is written anyway.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax

from seqresearch import configlib
from seqresearch.bench import baselines, harness, runner, scaling, table
from seqresearch.bench.settings import QUICK, BenchSettings


@dataclasses.dataclass(frozen=True)
class Plan:
  """The sizes of one device check (see `plan`).

  Attributes:
    bench: the quick benchmark's settings.
    transformer_target, lstm_target: settings of the two target measurements.
    main_steps: None runs the main job as configured; an int shrinks it (tiny model, that many
      steps).
    seeds, seed_steps: K and the timed steps of the vmapped-seeds comparison.
    budget_s: parts that would start after this many seconds are skipped (None: no budget;
      the CPU subset runs every part, as its purpose is to exercise them all).
  """

  bench: BenchSettings
  transformer_target: BenchSettings
  lstm_target: BenchSettings
  main_steps: int | None
  seeds: int
  seed_steps: int
  budget_s: float | None


def plan(backend: str) -> Plan:
  """The full check on an accelerator, the tiny subset on the CPU."""
  if backend != "cpu":
    quick = dict(QUICK, runner_steps=0, torch=False, bfloat16=True, scan_forms=True)
    return Plan(bench=BenchSettings(**quick),
                transformer_target=BenchSettings(batch_size=8, width=1024, num_heads=8,
                                                 mlp_dim=4096, lengths=(4096,), torch=False,
                                                 min_rep_seconds=0.2, bfloat16=True),
                lstm_target=BenchSettings(batch_size=256, width=1024, embed_dim=1024,
                                          lengths=(1024,), torch=False, min_rep_seconds=0.2,
                                          bfloat16=True),
                main_steps=None, seeds=8, seed_steps=20, budget_s=420.0)
  tiny = dict(batch_size=2, width=8, embed_dim=4, num_heads=2, mlp_dim=16, vocab_size=5,
              torch=False, variants=False, min_rep_seconds=0.0, compile_lengths=(),
              runner_steps=0, bfloat16=True)
  # One model with a GPU-only baseline: the other's rows run in the targets part.
  gpu_model = _model_with_baseline("jax_cudnn_lstm")
  return Plan(bench=BenchSettings(models=(gpu_model,), lengths=(6,), **tiny),
              transformer_target=BenchSettings(lengths=(8,), **tiny),
              lstm_target=BenchSettings(lengths=(8,), **tiny),
              main_steps=6, seeds=2, seed_steps=2, budget_s=None)


def _model_with_baseline(baseline: str) -> str | None:
  """The first model of the table that `baseline` is a counterpart of."""
  return next((m for m, b in baselines.BASELINES.items() if baseline in b), None)


def _target_rows(s: BenchSettings, baseline: str) -> list[dict[str, Any]]:
  """Ours (float32 and, where the model has it, bfloat16) and `baseline` at the target size."""
  model = _model_with_baseline(baseline)
  if model is None:
    return [{"status": "unavailable", "reason": f"no model has the baseline {baseline}"}]
  impls = [i for i in baselines.impls(model, dataclasses.replace(s, variants=False))
           if i.source == "ours" or i.source == baseline]
  return runner.measure_size(model, s.lengths[0], s, tuple(impls))


def _best_ours(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
  ok = [r for r in rows if r.get("status") == "ok" and r["impl"].startswith("ours")]
  return max(ok, key=lambda r: r["tokens_per_sec"], default=None)


def targets(p: Plan, roof: dict[str, Any]) -> dict[str, Any]:
  """The issue-17 targets: rows measured, and per target the value, threshold and verdict.

  On the CPU (tiny sizes) `met` is None: the subset checks the code, not the targets.
  """
  judged = jax.default_backend() != "cpu"
  out: dict[str, Any] = {"rows": []}
  rows = _target_rows(p.transformer_target, "jax_dpa_cudnn")
  for r in rows:
    if r.get("matmul_flops_per_sec"):
      r["fraction_of_roof"] = r["matmul_flops_per_sec"] / roof["flops_per_sec"]
  best = _best_ours(rows)
  out["transformer_mfu"] = {
      "target": f">= 0.40 of the {roof['dtype']} matmul roof",
      "impl": best and best["impl"], "value": best and best.get("fraction_of_roof"),
      "met": None if best is None or not judged
             else best.get("fraction_of_roof", 0.0) >= 0.40}
  out["rows"] += rows
  rows = _target_rows(p.lstm_target, "jax_cudnn_lstm")
  best = _best_ours(rows)
  cudnn = next((r for r in rows if r.get("impl") == "jax_cudnn_lstm"), {})
  ratio = (best["tokens_per_sec"] / cudnn["tokens_per_sec"]
           if best and cudnn.get("status") == "ok" else None)
  out["lstm_vs_cudnn"] = {"target": ">= 0.7x the tokens/s of cuDNN's LSTM",
                          "impl": best and best["impl"], "value": ratio,
                          "met": None if ratio is None or not judged else ratio >= 0.7,
                          "cudnn_status": cudnn.get("status"), "reason": cudnn.get("reason")}
  out["rows"] += rows
  return out


def run_pytest(test_file: str, timeout_s: float) -> dict[str, Any]:
  """`pytest -m gpu test_file` in a child process: its counts and the tail of its output."""
  cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-m", "gpu", "-rs", test_file]
  # This process's JAX already holds most of the accelerator's memory (XLA preallocates 75%
  # by default): the child must allocate as it goes, or it fails for want of memory.
  env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False,
                        env=env)
  counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error|deselected)",
                                             proc.stdout)}
  return {"status": "ok" if proc.returncode == 0 else "error", "exit_status": proc.returncode,
          **counts, "output_tail": proc.stdout[-1500:]}


def main_job(config: Any, main_steps: int | None) -> dict[str, Any]:
  """Trains the main job's config in a temporary workdir; accuracy, loss and wall time."""
  from seqresearch import train  # pylint: disable=g-import-not-at-top  (heavy: orbax)
  config = config.copy_and_resolve_references()
  config.progress_bar = False
  if main_steps is not None:
    configlib.make_tiny(config)
    config.num_train_steps = main_steps
  with tempfile.TemporaryDirectory() as workdir:
    started = time.perf_counter()
    summary = train.train_and_evaluate(config, workdir)
    wall = time.perf_counter() - started
  ev = summary.get("eval", {})
  return {"model": config.model.name, "task": config.task.name,
          "num_train_steps": config.num_train_steps, "final_step": summary["final_step"],
          "accuracy": ev.get("accuracy"), "sequence_accuracy": ev.get("sequence_accuracy"),
          "loss": ev.get("loss"), "wall_s": wall}


def output_path(out_dir: str) -> str:
  """<out_dir>/<backend>-<device kind>.json, e.g. benchmarks/gpu-nvidia-h200.json."""
  kind = re.sub(r"[^a-z0-9]+", "-", jax.devices()[0].device_kind.lower()).strip("-")
  backend = jax.default_backend()
  name = f"{backend}-device-check" if kind in ("", backend) else f"{backend}-{kind}"
  return os.path.join(out_dir, name + ".json")


def run_device_check(main_config: Any, test_file: str | None,
                     log: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
  """Runs every part of `plan(backend)` within its time budget (see the module docstring).

  Args:
    main_config: the main job's run config (configs/copy.py:lstm).
    test_file: the file of the `gpu` tests (None skips them).
    log: called with a line before each part.
  """
  p = plan(jax.default_backend())
  started = time.perf_counter()
  out: dict[str, Any] = {"schema_version": 1, "environment": harness.environment(),
                         "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         "budget_s": p.budget_s, "parts": {}}
  parts: list[tuple[str, Callable[[], Any]]] = [
      ("bench", lambda: runner.run_benchmark(p.bench)),
      ("targets", lambda: targets(p, out["parts"]["bench"].get("roof")
                                  or harness.matmul_roof(p.bench.repetitions))),
      ("main_job", lambda: main_job(main_config, p.main_steps)),
      ("seeds_vmapped_vs_sequential", lambda: scaling.seeds_vmapped_vs_sequential(
          main_config, p.seeds, num_steps=p.seed_steps)),
  ]
  if test_file is not None:
    parts.insert(0, ("gpu_tests", lambda: run_pytest(test_file, timeout_s=(p.budget_s or 600) / 3)))
  for name, measure in parts:
    elapsed = time.perf_counter() - started
    if p.budget_s is not None and elapsed > p.budget_s:
      out["parts"][name] = {"status": "skipped",
                            "reason": f"time budget {p.budget_s:.0f}s spent ({elapsed:.0f}s)"}
      continue
    log(name)
    t0 = time.perf_counter()
    out["parts"][name] = runner.guarded(measure)
    out.setdefault("part_wall_s", {})[name] = time.perf_counter() - t0
  out["wall_s"] = time.perf_counter() - started
  return out


def _status(part: Any) -> str:
  return part.get("status", "ok") if isinstance(part, dict) else "ok"


def format_check(results: dict[str, Any]) -> str:
  """The device check's table: each part's status and wall time, the targets, the bench."""
  env, parts = results["environment"], results["parts"]
  budget = results["budget_s"]
  lines = [f"device check on {env['backend']} ({env['device_kind']} x {env['device_count']}), "
           f"{results['wall_s']:.0f}s" + ("" if budget is None else f" of a {budget:.0f}s budget")]
  for name, part in parts.items():
    wall = results.get("part_wall_s", {}).get(name)
    reason = part.get("reason") if isinstance(part, dict) else None
    lines.append(f"  {name:<28} {_status(part):<8} {'' if wall is None else f'{wall:6.1f}s'}"
                 + (f"  {reason}" if reason and _status(part) != "ok" else ""))
  tests = parts.get("gpu_tests", {})
  if "passed" in tests or "skipped" in tests:
    lines.append(f"gpu tests: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} "
                 f"failed, {tests.get('skipped', 0)} skipped")
  t = parts.get("targets", {})
  for key in ("transformer_mfu", "lstm_vs_cudnn"):
    if key in t:
      v = t[key]
      value = "-" if v["value"] is None else f"{v['value']:.3f}"
      lines.append(f"target {key}: {v['target']}: {value} ({v['impl']}), met: {v['met']}")
  job = parts.get("main_job", {})
  if _status(job) == "ok" and "accuracy" in job:
    lines.append(f"main job ({job['task']}/{job['model']}, {job['final_step']} steps): "
                 f"accuracy {job['accuracy']:.4f}, sequence accuracy "
                 f"{job['sequence_accuracy']:.4f}, loss {job['loss']:.4f}, {job['wall_s']:.1f}s")
  if _status(parts.get("seeds_vmapped_vs_sequential", {})) == "ok" and \
      "speedup" in parts.get("seeds_vmapped_vs_sequential", {}):
    lines.append(table.seeds_line(parts["seeds_vmapped_vs_sequential"]))
  bench = parts.get("bench", {})
  if _status(bench) == "ok" and "results" in bench:
    lines.append(table.format_table(bench))
  return "\n".join(lines)
