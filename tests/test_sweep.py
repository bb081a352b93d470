"""Sweeps: expansion, readable names, skip/resume, failures recorded, seeds summarised, submitit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import CONFIG_FILES, ROOT
from seqresearch import sweep
from seqresearch.analysis import fits

SWEEP_FILE = textwrap.dedent('''
    import importlib.util, os
    spec = importlib.util.spec_from_file_location("copy_config", os.path.join({root!r}, "configs", "copy.py"))
    copy_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy_config)
    get_config = copy_config.get_config

    def get_sweep(arg):
      return ([{{"model": "lstm", "seed": s}} for s in (0, 1)] +
              # This one diverges (NaN) at run time: the sweep must record it and go on.
              [{{"model": "lstm", "seed": 2, "optimizer.name": "sgd",
                 "optimizer.grad_clip_norm": 0.0, "optimizer.learning_rate": 1e38}}])
''')


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_every_sweep_entry_builds(tmp_path, path):
  for arg in (None, "tiny"):
    runs = sweep.expand(os.path.join(ROOT, path), arg, str(tmp_path))
    assert len({r.name for r in runs}) == len(runs) >= 8
    assert all(r.workdir == str(tmp_path / r.name) for r in runs)


def test_run_names_are_readable_and_unique():
  assert sweep.run_name({"model": "lstm", "task.max_delay": 100, "seed": 0}) == \
      "model-lstm_max_delay-100_seed-0"
  # Two keys with the same last component keep their full paths.
  assert sweep.run_name({"task.x": 1, "model.x": 2}) == "task.x-1_model.x-2"


def test_bad_sweep_entry_fails_before_running(tmp_path):
  config = tmp_path / "bad.py"
  config.write_text(SWEEP_FILE.format(root=ROOT).replace(
      '"seed": s} for s in (0, 1)]', '"model.hidden_size": -1} for s in (0, 1)]'))
  with pytest.raises(ValueError, match=r"sweep run .*model.hidden_size=-1"):
    sweep.expand(str(config), "tiny", str(tmp_path / "sweep"))


def test_local_sweep_records_failures_summarises_seeds_and_skips_finished(tmp_path):
  config = tmp_path / "sweep_config.py"
  config.write_text(SWEEP_FILE.format(root=ROOT))
  sweep_dir = tmp_path / "sweep"
  command = [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"),
             f"--config={config}:tiny", f"--workdir={sweep_dir}", "--parallel=2"]
  first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert first.returncode == 1, first.stdout + first.stderr  # One member failed.
  assert "FAILED model-lstm_seed-2_name-sgd" in first.stderr

  ok = [sweep_dir / "model-lstm_seed-0", sweep_dir / "model-lstm_seed-1"]
  assert all((d / "summary.json").exists() for d in ok)
  failed = next(d for d in sweep_dir.iterdir() if d.name.startswith("model-lstm_seed-2"))
  assert "NaN/Inf" in (failed / "error.txt").read_text()
  assert not (failed / "summary.json").exists()

  rows = json.load(open(sweep_dir / "summary.json"))
  group = next(r for r in rows if "optimizer.name" not in r)
  accuracies = [json.load(open(d / "summary.json"))["eval"]["accuracy"] for d in ok]
  mean, half = fits.mean_ci(accuracies)
  assert group["num_seeds"] == 2
  assert group["accuracy_mean"] == pytest.approx(np.mean(accuracies))
  assert group["accuracy_ci95"] == pytest.approx(half)
  assert "accuracy_mean" in open(sweep_dir / "summary.csv").readline()

  # Rerun: finished members are skipped (their files untouched), the failed one is retried.
  stamp = os.path.getmtime(ok[0] / "summary.json")
  second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert second.returncode == 1
  assert "model-lstm_seed-0: skipped (finished)" in second.stdout
  assert os.path.getmtime(ok[0] / "summary.json") == stamp


def test_submitit_local_executor_runs_a_sweep(tmp_path):
  pytest.importorskip("submitit")
  runs = sweep.expand(os.path.join(ROOT, "configs", "copy.py"), "tiny", str(tmp_path))
  runs = [r for r in runs if r.name.startswith("model-lstm_min_delay-10_max_delay-10_seed-0")]
  assert len(runs) == 1
  results = sweep.run_submitit(runs, str(tmp_path / "submitit"), cluster="local", partition="",
                               timeout_min=10, gpus_per_job=0, array_parallelism=1)
  assert results == [{"name": runs[0].name, "status": "done"}]
  assert runs[0].finished
