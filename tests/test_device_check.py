"""scripts/device_check.py: its plan matches the accelerator targets, its budget skips parts
with a reason, and its CPU subset runs end to end (so the script never breaks unseen)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from seqresearch.bench import device

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("gpu_tests", "bench", "targets", "main_job", "seeds_vmapped_vs_sequential")


def test_the_accelerator_plan_measures_the_issue_17_targets_at_their_sizes():
  p = device.plan("gpu")
  t, l = p.transformer_target, p.lstm_target
  assert (t.lengths, t.width, t.bfloat16) == ((4096,), 1024, True)
  assert (l.lengths, l.batch_size, l.width) == ((1024,), 256, 1024)
  assert p.bench.lengths == (64,) and p.bench.bfloat16 and p.main_steps is None
  assert (p.seeds, p.budget_s) == (8, 420.0)
  assert device.plan("cpu").budget_s is None  # the subset runs every part


def test_parts_past_the_budget_are_skipped_with_the_reason(monkeypatch, tiny_config):
  p = device.plan("cpu")
  monkeypatch.setattr(device, "plan", lambda backend: device.dataclasses.replace(p, budget_s=-1))
  results = device.run_device_check(tiny_config(), test_file="unused.py")
  assert list(results["parts"]) == list(PARTS)
  for part in results["parts"].values():
    assert part["status"] == "skipped" and "time budget" in part["reason"]
  assert "skipped" in device.format_check(results)
  assert device.output_path("out") == os.path.join("out", "cpu-device-check.json")


@pytest.mark.slow  # about 1.5 min on an idle 2-core CPU (every part compiles)
def test_the_cpu_subset_of_the_script_runs_every_part(tmp_path):
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "scripts", "device_check.py"), f"--out={tmp_path}"],
      cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((tmp_path / "cpu-device-check.json").read_text())
  parts = results["parts"]
  assert {name: parts[name].get("status", "ok") for name in PARTS} == dict.fromkeys(PARTS, "ok")
  assert parts["gpu_tests"]["skipped"] >= 3 and "failed" not in parts["gpu_tests"]
  assert {r["impl"] for r in parts["bench"]["results"]} >= {"ours", "jax_cudnn_lstm"}
  assert parts["targets"]["lstm_vs_cudnn"]["cudnn_status"] == "unavailable"
  assert parts["main_job"]["final_step"] == 6
  assert parts["seeds_vmapped_vs_sequential"]["num_seeds"] == 2
  for line in ("gpu tests: 0 passed", "target transformer_mfu", "main job (copy/lstm",
               "2 seeds of lstm", "wrote "):
    assert line in proc.stdout, line
