"""The benchmark's structure: it runs on tiny sizes, its JSON has the documented fields and the
table prints. Never its timings (shared machines are noisy; the numbers are the report's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from conftest import ROOT, load_config
from seqresearch import benchmark

TINY = dict(batch_size=2, width=8, embed_dim=4, num_heads=2, mlp_dim=16, vocab_size=5,
            lengths=(6,), repetitions=5, min_rep_seconds=0.0, compile_lengths=(4, 8))
RESULT_FIELDS = ("model", "impl", "batch_size", "length", "width", "status", "reason",
                 "train_step_s", "train_step_s_all", "tokens_per_sec", "forward_s",
                 "forward_s_all", "compile_s", "peak_memory_bytes", "matmul_flops_per_step",
                 "matmul_flops_per_sec", "fraction_of_roof", "ours_speedup")


def test_tiny_run_has_every_field_and_prints_the_table(tmp_path):
  settings = benchmark.BenchSettings(models=("lstm", "transformer"), variants=False, **TINY)
  results = benchmark.run_benchmark(settings, runner_config=None)  # the script test has one

  assert results["schema_version"] == 1
  assert results["settings"]["lengths"] == [6] or results["settings"]["lengths"] == (6,)
  env = results["environment"]
  assert env["backend"] == jax.default_backend()
  assert {"jax", "jaxlib", "flax", "optax", "torch"} <= set(env["versions"])
  assert results["roof"]["flops_per_sec"] > 0 and len(results["roof"]["seconds_all"]) == 5

  rows = {(r["model"], r["impl"]): r for r in results["results"]}
  expected = {("lstm", "ours"), ("lstm", "flax_optimized_lstm"), ("lstm", "flax_lstm"),
              ("lstm", "torch"), ("lstm", "jax_cudnn_lstm"), ("transformer", "ours"), ("transformer", "flax_mha"),
              ("transformer", "jax_dpa_xla"), ("transformer", "torch")}
  assert expected <= set(rows)
  for (model, impl), row in rows.items():
    if row["status"] != "ok":  # GPU-only or torch missing: a reason, never a crash
      assert row["status"] == "unavailable" and row["reason"], row
      continue
    missing = [f for f in RESULT_FIELDS if f not in row]
    assert not missing, (model, impl, missing)
    assert len(row["train_step_s_all"]) == len(row["forward_s_all"]) == 5
    assert row["tokens_per_sec"] == pytest.approx(2 * 6 / row["train_step_s"])
    assert row["matmul_flops_per_step"] > 0
  assert rows["lstm", "ours"]["ours_speedup"] == 1.0
  # Same model math: every implementation of a model does the same matmul work.
  assert rows["lstm", "flax_lstm"]["matmul_flops_per_step"] == \
      rows["lstm", "ours"]["matmul_flops_per_step"]

  (scaling,) = results["compile_scaling"]
  assert scaling["model"] == "lstm" and set(scaling["compile_s"]) == {"4", "8"}
  assert "runner" not in results

  table = benchmark.format_table(results)
  for model, impl in expected:
    assert impl in table and model in table
  assert "compile time" in table

  path = tmp_path / "out" / "bench.json"
  benchmark.write_json(results, str(path))
  assert json.loads(path.read_text())["results"][0]["model"] == "lstm"


def test_missing_torch_is_recorded_as_unavailable(monkeypatch):
  def no_torch(threads):
    raise benchmark._Unavailable("torch not importable (test)")
  monkeypatch.setattr(benchmark, "_import_torch", no_torch)
  settings = benchmark.BenchSettings(models=("rnn",), variants=False, runner_steps=0, **TINY)
  rows = {r["impl"]: r for r in benchmark.measure_size("rnn", 6, settings)}
  assert rows["torch"]["status"] == "unavailable" and "torch" in rows["torch"]["reason"]
  assert rows["ours"]["status"] == "ok" and rows["flax_simple_cell"]["status"] == "ok"
  assert benchmark.environment(settings)["versions"]["torch"] == "unavailable"


def test_matmul_flops_counts_scan_bodies_length_times():
  def f(w_HxH, h_BxH):
    step = lambda h, _: (jnp.tanh(h @ w_HxH), None)
    return jax.lax.scan(step, h_BxH, None, length=7)[0].sum()
  args = (jnp.ones((3, 3)), jnp.ones((2, 3)))
  assert benchmark.matmul_flops(jax.make_jaxpr(f)(*args).jaxpr) == 7 * 2 * 2 * 3 * 3
  # The gradient: the forward scan, and per step two matmuls in the backward scan.
  grad = jax.make_jaxpr(jax.grad(f))(*args).jaxpr
  assert benchmark.matmul_flops(grad) == 3 * 7 * 2 * 2 * 3 * 3


def test_variant_names_build_ours_with_the_named_fields():
  impl = benchmark._variant_name(dict(weight_grads="autodiff", hoist_input=False))
  assert impl == "ours[weight_grads=autodiff,hoist_input=False]"
  settings = benchmark.BenchSettings(**TINY)
  model = benchmark.build_jax_model("gru", impl, settings, 6, jax.random.key(0))
  assert model.settings.weight_grads == "autodiff" and model.settings.hoist_input is False


def test_settings_are_validated():
  with pytest.raises(ValueError, match="repetitions=3"):
    benchmark.BenchSettings(repetitions=3)
  with pytest.raises(ValueError, match="unknown"):
    benchmark.BenchSettings(models=("lstm", "mamba"))


def test_script_quick_mode_runs_with_the_runner_and_writes_json(tmp_path):
  out = tmp_path / "bench.json"
  cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench.py"), "--quick", "--models=rnn",
         "--lengths=4", "--batch_size=2", "--width=8", "--torch=false", "--runner_steps=4",
         "--runner_config=configs/copy.py:lstm,tiny", f"--out={out}"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "flax_simple_cell" in proc.stdout and f"wrote {out}" in proc.stdout
  results = json.loads(out.read_text())
  assert {r["impl"] for r in results["results"]} == {"ours", "flax_simple_cell"}
  assert results["settings"]["variants"] is False  # quick mode
  runner = results["runner"]
  assert runner["runner_final_step"] == 4 and runner["bare_steps_per_sec"] > 0
  assert runner["overall_ratio"] > 0 and runner["interval_ratio"] > 0
  assert "runner (copy/lstm" in proc.stdout
