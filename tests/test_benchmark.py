"""The benchmark package: FLOPs, shapes, rows and JSON it reports, and how it times.

Never its timings against a threshold (shared machines are noisy; the numbers are the
report's): the timing helpers are checked with fake runners whose durations are known.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from seqresearch import models
from seqresearch.bench import baselines, harness, runner, table
from seqresearch.bench.settings import BenchSettings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(batch_size=2, width=8, embed_dim=4, num_heads=2, mlp_dim=16, vocab_size=5,
            lengths=(6,), repetitions=5, min_rep_seconds=0.0, compile_lengths=(4, 8))
RESULT_FIELDS = ("model", "impl", "batch_size", "length", "width", "status", "reason",
                 "train_step_s", "train_step_s_all", "tokens_per_sec", "forward_s",
                 "forward_s_all", "compile_s", "peak_memory_bytes", "matmul_flops_per_step",
                 "matmul_flops_per_sec", "fraction_of_roof", "ours_speedup")


def _strict_json(text: str):
  """json.loads that rejects NaN/Infinity (what strict parsers do)."""
  def reject(name):
    raise ValueError(f"non-standard JSON constant {name}")
  return json.loads(text, parse_constant=reject)


@pytest.mark.slow  # end-to-end benchmark runs (19-38 CPU-s)
def test_tiny_run_counts_flops_exactly_and_writes_strict_json(tmp_path):
  settings = BenchSettings(models=("lstm",), variants=False, **TINY)
  results = runner.run_benchmark(settings, runner_config=None)

  env = results["environment"]
  assert env["backend"] == jax.default_backend() and env["device_count"] == jax.device_count()
  assert env["versions"]["jax"] == jax.__version__
  assert results["settings"]["models"] == ("lstm",)
  rows = {(r["model"], r["impl"]): r for r in results["results"]}
  assert set(rows) == {("lstm", i.name) for i in baselines.impls("lstm", settings)}
  for (model, impl), row in rows.items():
    if row["status"] != "ok":  # GPU-only or torch missing: a reason, never a crash
      assert row["status"] == "unavailable" and row["reason"], row
      assert impl in baselines.GPU_ONLY or impl == "torch", row
      continue
    assert not [f for f in RESULT_FIELDS if f not in row], (model, impl)
    assert len(row["train_step_s_all"]) == len(row["forward_s_all"]) == 5
    assert min(row["train_step_s_all"]) <= row["train_step_s"] <= max(row["train_step_s_all"])
  # Matmul FLOPs from analysis.flops, scan bodies times n: B·n·(2·4H·(E+H) + 2·H·V) forward
  # (embedding lookups are gathers, no matmul), and the backward twice that.
  b, n, e, h, v = 2, 6, 4, 8, 5
  forward = b * n * (2 * 4 * h * (e + h) + 2 * h * v)
  lstm = rows["lstm", "ours"]
  assert lstm["forward_matmul_flops"] == forward
  assert lstm["matmul_flops_per_step"] == 3 * forward
  # The same model math: Flax's LSTM does the same matmul work as ours.
  assert rows["lstm", "flax_lstm"]["matmul_flops_per_step"] == 3 * forward
  assert rows["lstm", "flax_lstm"]["num_params"] == lstm["num_params"]
  roof = results["roof"]["flops_per_sec"]
  assert lstm["fraction_of_roof"] == pytest.approx(3 * forward / lstm["train_step_s"] / roof)
  flax_row = rows["lstm", "flax_lstm"]
  assert flax_row["ours_speedup"] == pytest.approx(flax_row["train_step_s"] / lstm["train_step_s"])

  (compile_row,) = results["compile_scaling"]  # recurrent models only (settings.is_recurrent)
  assert compile_row["model"] == "lstm" and set(compile_row["compile_s"]) == {"4", "8"}
  assert "runner" not in results

  text = table.format_table(results)
  for model, impl in rows:
    assert any(model in line and impl in line for line in text.splitlines()), (model, impl)
  path = tmp_path / "out" / "bench.json"
  runner.write_json(results, str(path))
  assert _strict_json(path.read_text())["results"][0]["model"] == "lstm"


def test_every_model_and_baseline_builds_at_the_benchmark_shape():
  settings = BenchSettings(**TINY)
  tokens_BxT = jnp.zeros((2, 6), jnp.int32)
  for name in models.MODEL_NAMES:
    assert baselines.impls(name, settings)[0] == baselines.ours()
    for impl in baselines.impls(name, settings):
      if impl.source == "torch" or impl.source in baselines.GPU_ONLY:
        continue
      # Built and called abstractly: traced, never compiled (a real run is the test above).
      built = nnx.eval_shape(lambda i=impl, n=name: baselines.build_jax_model(
          n, i, settings, 6, jax.random.key(0)))
      graphdef, state = nnx.split(built)
      logits = jax.eval_shape(lambda st, t, g=graphdef: nnx.merge(g, st)(t), state, tokens_BxT)
      assert logits.shape == (2, 6, 5), (name, impl)
    module = nnx.eval_shape(lambda n=name: baselines.build_jax_model(
        n, baselines.ours(), settings, 6, jax.random.key(0)))
    fields = baselines.size_fields(name, settings, 6)
    for field, value in fields.items():
      assert getattr(module.settings, field) == value, (name, field)
    assert {"hidden_size", "d_model"} & set(fields), f"{name}: no width field set"


def test_variants_are_typed_and_build_ours_with_the_named_fields():
  impl = baselines.ours(weight_grads="autodiff", hoist_input=False)
  assert impl.name == "ours[weight_grads=autodiff,hoist_input=False]"
  settings = BenchSettings(**TINY)
  model = baselines.build_jax_model("gru", impl, settings, 6, jax.random.key(0))
  assert model.settings.weight_grads == "autodiff" and model.settings.hoist_input is False
  # Variants follow the settings class: every variant's fields are fields of that class.
  for name in models.MODEL_NAMES:
    allowed = set(models.registry.config_fields(name))
    for variant in baselines.impls(name, settings)[1:]:
      assert set(dict(variant.fields)) <= allowed, (name, variant)
  # Models with a shared field get its forms timed against each other (none without it).
  quick = BenchSettings(**{**TINY, "variants": False, "scan_forms": True})
  for name in models.MODEL_NAMES:
    names = {i.name for i in baselines.impls(name, quick)}
    has_scan = "scan" in models.registry.config_fields(name)
    assert ("ours[scan=associative]" in names) == has_scan, (name, names)
  with pytest.raises(ValueError, match="not a JAX implementation"):
    baselines.build_jax_model("gru", baselines.Impl("torch"), settings, 6, jax.random.key(0))


def test_missing_torch_is_recorded_as_unavailable(monkeypatch):
  def no_torch(threads):
    raise harness.Unavailable("torch not importable (test)")
  monkeypatch.setattr(baselines, "import_torch", no_torch)
  settings = BenchSettings(models=("rnn",), variants=False, runner_steps=0, **TINY)
  rows = {r["impl"]: r for r in runner.measure_size("rnn", 6, settings)}
  assert rows["torch"]["status"] == "unavailable" and "torch" in rows["torch"]["reason"]
  assert rows["ours"]["status"] == "ok" and rows["flax_simple_cell"]["status"] == "ok"
  assert baselines.torch_version(settings) == "unavailable"


def test_a_failing_implementation_is_an_error_row_and_the_others_run(monkeypatch):
  real = baselines.build_jax_model

  def broken(model, impl, s, length, key):
    if impl.source == "flax_simple_cell":
      raise RuntimeError("out of memory (test)")
    return real(model, impl, s, length, key)
  monkeypatch.setattr(baselines, "build_jax_model", broken)
  settings = BenchSettings(models=("rnn",), variants=False, torch=False, **TINY)
  rows = {r["impl"]: r for r in runner.measure_size("rnn", 6, settings)}
  assert rows["flax_simple_cell"] == {**rows["flax_simple_cell"], "status": "error",
                                      "reason": "RuntimeError: out of memory (test)"}
  assert rows["ours"]["status"] == "ok" and rows["ours"]["train_step_s"] > 0


class _FakeRunner:
  """A runner whose steps take known (fake) seconds; it records the order of its calls."""

  def __init__(self, name, seconds_per_step, calls):
    self.name, self.seconds_per_step, self.calls = name, seconds_per_step, calls

  def train(self, k):
    self.calls.append((self.name, k))
    return k * self.seconds_per_step

  forward = train


def test_time_interleaved_sizes_repetitions_and_interleaves():
  calls = []
  runners = {"a": _FakeRunner("a", 0.01, calls), "b": _FakeRunner("b", 0.1, calls)}
  times = harness.time_interleaved(runners, "train", repetitions=5, min_rep_seconds=0.05)
  # a: 5 steps fill 0.05 s; b: 1 step already does. Warm-ups first, then rounds a, b, a, b ...
  assert calls == [("a", 1), ("a", 5), ("b", 1), ("b", 1)] + [("a", 5), ("b", 1)] * 5
  assert times == {"a": [pytest.approx(0.01)] * 5, "b": [pytest.approx(0.1)] * 5}


def test_time_loop_waits_for_the_last_result():
  outputs, synced = iter(range(10)), []
  seconds = harness.time_loop(lambda: next(outputs), 3, sync=synced.append)
  assert synced == [2] and seconds >= 0
  with pytest.raises(ValueError, match="num_steps=0"):
    harness.time_loop(lambda: None, 0)


def test_settings_are_validated():
  with pytest.raises(ValueError, match="repetitions=3"):
    BenchSettings(repetitions=3)
  with pytest.raises(ValueError, match=r"models=\['lstm', 'mamba'\]: unknown \['mamba'\]"):
    BenchSettings(models=("lstm", "mamba"))
  with pytest.raises(ValueError, match="device_counts=0"):
    BenchSettings(device_counts=(0,))
  with pytest.raises(ValueError, match="num_heads=3"):
    BenchSettings(num_heads=3)


@pytest.mark.slow  # end-to-end benchmark runs (19-38 CPU-s)
def test_script_quick_mode_runs_the_runner_and_keeps_a_failed_device_count(tmp_path):
  out = tmp_path / "bench.json"
  # batch_size 8 of the tiny config does not divide over 3 devices: that child fails.
  cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench.py"), "--quick", "--models=rnn",
         "--lengths=4", "--batch_size=2", "--width=8", "--torch=false", "--runner_steps=4",
         "--device_counts=3", "--runner_config=configs/copy.py:lstm,tiny", f"--out={out}"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "flax_simple_cell" in proc.stdout and f"wrote {out}" in proc.stdout
  results = _strict_json(out.read_text())
  assert {r["impl"] for r in results["results"]} == {"ours", "flax_simple_cell"}
  assert results["settings"]["variants"] is False  # quick mode
  run = results["runner"]
  assert run["runner_final_step"] == 4 and run["num_train_steps"] == 4
  assert len(run["bare_steps_per_sec_all"]) == 10  # 5 repetitions before and 5 after the run
  assert "runner (copy/lstm" in proc.stdout
  (row,) = results["steps_per_sec_by_devices"]
  assert row["devices"] == 3 and row["status"] == "error"
  assert "batch_size=8" in row["reason"] and "(3)" in row["reason"], row
  assert "steps/s on 3 device(s): error" in proc.stdout


def test_script_refuses_a_bad_flag_with_one_line():
  cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench.py"), "--lengths=64,x"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: --lengths=64,x: must be integers, e.g. --lengths=1,2"]
