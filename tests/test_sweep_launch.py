"""Running sweeps: devices taken when a run starts, Ctrl-C stops resumably, [k/N] and ETA,
user mistakes in scripts/sweep.py are one line and exit 2, a real local sweep end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from seqresearch import sweep
from seqresearch import sweep_launch
from seqresearch.analysis import fits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP_SCRIPT = os.path.join(ROOT, "scripts", "sweep.py")

SWEEP_FILE = textwrap.dedent('''
    import importlib.util, os
    spec = importlib.util.spec_from_file_location("copy_config", os.path.join({root!r}, "configs", "copy.py"))
    copy_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy_config)
    get_config = copy_config.get_config

    def get_sweep(arg):
      return {entries}
''')


@pytest.fixture
def sweep_file(tmp_path):
  def make(entries: str, name: str = "sweep_config.py") -> str:
    path = tmp_path / name
    path.write_text(SWEEP_FILE.format(root=ROOT, entries=entries))
    return str(path)
  return make


def _runs(n: int, tmp_path) -> list[sweep.Run]:
  return [sweep.Run(name=f"run{i}", config_arg="x.py:lstm", overrides=(), seeds=(i,),
                    workdir=str(tmp_path / f"run{i}")) for i in range(n)]


class FakeChild:
  """A child process that exits with `code` after `seconds` (no process is started)."""

  def __init__(self, seconds: float, code: int = 0, on_term: int | None = None) -> None:
    self.end, self.code, self.on_term, self.signals = time.monotonic() + seconds, code, on_term, []

  def poll(self) -> int | None:
    return self.code if time.monotonic() >= self.end else None

  def send_signal(self, sig: int) -> None:
    self.signals.append(sig)
    if sig == signal.SIGTERM and self.on_term is not None:
      self.code, self.end = self.on_term, time.monotonic()

  def kill(self) -> None:
    self.code, self.end = -9, time.monotonic()

  def wait(self, timeout: float | None = None) -> int:
    while self.poll() is None:
      time.sleep(0.01)
    return self.code


def test_a_device_is_taken_when_the_run_starts_from_the_free_ones(tmp_path):
  # Issue 14 item 14: run 1 ends first, so run 2 must start on device 1 (run 0 still holds 0).
  seconds = [0.6, 0.1, 0.3, 0.1]
  log: list[tuple[str, str, float, float]] = []

  def launch(run, env):
    child = FakeChild(seconds[int(run.name[3:])])
    log.append((run.name, env["CUDA_VISIBLE_DEVICES"], time.monotonic(), child.end))
    return child

  results = sweep_launch.run_local(_runs(4, tmp_path), parallel=2, visible_devices=("0", "1"),
                            launch=launch, say=lambda line: None, poll_s=0.01)
  assert len(results) == 4
  devices = {name: device for name, device, _, _ in log}
  assert devices["run0"] == "0" and devices["run1"] == "1" and devices["run2"] == "1"
  for i, (a, dev_a, start_a, end_a) in enumerate(log):
    for b, dev_b, start_b, end_b in log[i + 1:]:
      overlap = start_b < end_a and start_a < end_b
      assert not (overlap and dev_a == dev_b), f"{a} and {b} shared device {dev_a}"


def test_progress_lines_count_runs_and_give_an_eta(tmp_path):
  lines: list[str] = []
  runs = _runs(3, tmp_path)
  os.makedirs(runs[0].workdir)
  open(os.path.join(runs[0].workdir, "summary.json"), "w").write("{}")  # Finished already.
  sweep_launch.run_local(runs, launch=lambda run, env: FakeChild(0.05), say=lines.append, poll_s=0.01)
  ends = [line for line in lines if line.startswith("[")]
  assert ends[0] == "[1/3] run0: skipped (finished)"
  assert ends[1].startswith("[2/3] run1: done in 0s; ETA 0s")
  assert ends[2].startswith("[3/3] run2: done in") and "ETA" not in ends[2]


def test_ctrl_c_stops_the_running_runs_resumably_and_starts_no_new_one(tmp_path):
  started, lines = [], []
  children = []

  def launch(run, env):
    started.append(run.name)
    children.append(FakeChild(60.0, on_term=sweep_launch.PREEMPTED))
    return children[-1]

  def say(line):
    lines.append(line)
    if len(started) == 2 and line.startswith("  started run1"):
      raise KeyboardInterrupt  # Ctrl-C while both runs train.

  with pytest.raises(KeyboardInterrupt):
    sweep_launch.run_local(_runs(4, tmp_path), parallel=2, launch=launch, say=say, poll_s=0.01)
  assert started == ["run0", "run1"]
  assert all(child.signals == [signal.SIGTERM] for child in children)
  assert "[1/4] run0: stopped (resumable: rerun the sweep)" in lines
  assert lines[-1] == ("Stopped by Ctrl-C: 4 run(s) not finished; rerun the same command to "
                       "resume them.")
  assert not any(os.path.exists(tmp_path / f"run{i}" / "error.txt") for i in range(4))


def test_a_failed_child_is_recorded_and_the_sweep_goes_on(tmp_path):
  runs = _runs(2, tmp_path)
  results = sweep_launch.run_local(runs, launch=lambda run, env: FakeChild(0.0, code=int(run.name[3:])),
                            say=lambda line: None, poll_s=0.01)
  assert [r["status"].split(" (")[0] for r in results] == ["done", "failed"]
  assert (tmp_path / "run1" / "error.txt").read_text().startswith("exit status 1")


def _script(args, timeout: float = 300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, SWEEP_SCRIPT, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout)


@pytest.mark.slow  # a real sweep of training children
def test_user_mistakes_in_a_sweep_are_one_line_and_exit_2(tmp_path, sweep_file):
  no_sweep = tmp_path / "no_sweep.py"
  no_sweep.write_text("def get_config(arg=None):\n  return None\n")
  bad_member = sweep_file('[{"seed": 0}, {"model.hidden_size": -1}]')
  cases = {
      f"--config={tmp_path}/missing.py": "no such file",
      f"--config={no_sweep}": "declares no get_sweep",
      f"--config={bad_member}:lstm,tiny": "sweep run model-lstm_hidden_size--1: model.hidden_size",
      f"--config={bad_member}:lstmm": "'lstmm': not a model name",
  }
  for flag, message in cases.items():
    result = _script([flag, f"--workdir={tmp_path / 'sw'}", "--dry_run"])
    assert result.returncode == 2, (flag, result.stderr)
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
  # --skip_invalid: the valid member runs, the invalid one is reported (dry run lists both).
  result = _script([f"--config={bad_member}:lstm,tiny", f"--workdir={tmp_path / 'sw'}",
                    "--dry_run", "--skip_invalid"])
  assert result.returncode == 0
  assert "[invalid: model.hidden_size=-1" in result.stdout and "[to run]" in result.stdout


@pytest.mark.slow  # a real sweep and training child (63 s at load 14; once > 240 s at load 9)
def test_ctrl_c_in_a_real_sweep_exits_130_without_a_traceback(tmp_path, sweep_file):
  config = sweep_file('[{"seed": 0, "num_train_steps": 100000}]')
  sweep_dir = tmp_path / "sweep"
  proc = subprocess.Popen([sys.executable, SWEEP_SCRIPT, f"--config={config}:lstm,tiny",
                           f"--workdir={sweep_dir}"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  line = ""
  while "started" not in line:
    line = proc.stdout.readline()
    assert line or proc.poll() is None, proc.stderr.read()
  run_dir = next(sweep_dir.iterdir())
  deadline = time.monotonic() + 600  # hang guards only
  while "step " not in (run_dir / "train.log").read_text():  # Training has begun.
    assert time.monotonic() < deadline and proc.poll() is None
    time.sleep(0.5)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 130, out + err
  assert "Traceback" not in out + err + (run_dir / "train.log").read_text()
  assert "stopped (resumable: rerun the sweep)" in out and "rerun the same command" in out
  assert not (run_dir / "summary.json").exists() and not (run_dir / "error.txt").exists()
  # The child saved a checkpoint on the way out: a rerun resumes from it.
  assert any(name.isdigit() for name in os.listdir(run_dir / "checkpoints"))


@pytest.mark.slow  # a real sweep of training children
def test_local_sweep_records_failures_summarises_seeds_and_skips_finished(tmp_path, sweep_file):
  config = sweep_file('''[{"model": "lstm", "seed": s} for s in (0, 1)] + [
      # This one diverges (NaN) at run time: the sweep must record it and go on.
      {"model": "lstm", "seed": 2, "optimizer.name": "sgd", "optimizer.grad_clip_norm": 0.0,
       "optimizer.learning_rate": 1e38}]''')
  sweep_dir = tmp_path / "sweep"
  command = [f"--config={config}:tiny", f"--workdir={sweep_dir}", "--parallel=2"]
  first = _script(command, timeout=600)
  assert first.returncode == 1, first.stdout + first.stderr  # One member failed.
  assert "FAILED model-lstm_seed-2_name-sgd" in first.stderr
  assert "[3/3]" in first.stdout

  ok = sorted(d for d in sweep_dir.iterdir() if d.name.startswith("model-lstm_seed-0-")
              or d.name.startswith("model-lstm_seed-1-"))
  assert len(ok) == 2 and all((d / "summary.json").exists() for d in ok)
  failed = next(d for d in sweep_dir.iterdir() if d.name.startswith("model-lstm_seed-2"))
  assert "NaN/Inf" in (failed / "error.txt").read_text()
  assert not (failed / "summary.json").exists()

  rows = json.load(open(sweep_dir / "summary.json"))
  group = next(r for r in rows if "optimizer.name" not in r)
  accuracies = [json.load(open(d / "summary.json"))["eval"]["accuracy"] for d in ok]
  mean, half = fits.mean_ci(accuracies)
  assert group["num_seeds"] == 2 and group["seeds"] == [0, 1]
  assert group["accuracy_mean"] == pytest.approx(np.mean(accuracies))
  assert group["accuracy_ci95"] == pytest.approx(half)
  assert "accuracy_mean" in open(sweep_dir / "summary.csv").readline()
  # The child wrote exactly the config the sweep built (values round-tripped the flags).
  runs = {r.name: r for r in sweep.expand(config, "tiny", str(sweep_dir))}
  assert all(runs[d.name].config_changes() == [] for d in ok)

  # Rerun: finished members are skipped (their files untouched), the failed one is retried.
  stamp = os.path.getmtime(ok[0] / "summary.json")
  second = _script(command, timeout=600)
  assert second.returncode == 1
  assert f"{ok[0].name}: skipped (finished)" in second.stdout
  assert os.path.getmtime(ok[0] / "summary.json") == stamp
  # Another option in the argument is another sweep: nothing of this one is reused.
  other = _script([f"--config={config}:tiny,copy_length=4", f"--workdir={sweep_dir}",
                   "--dry_run"])
  assert other.returncode == 0 and "[finished]" not in other.stdout
  assert other.stdout.count("[to run]") == 3


@pytest.mark.slow  # a real sweep of training children
def test_submitit_local_executor_runs_a_sweep(tmp_path):
  pytest.importorskip("submitit")
  runs = sweep.expand(os.path.join(ROOT, "configs", "copy.py"), "lstm,tiny", str(tmp_path))
  runs = [r for r in runs if r.name.startswith("model-lstm_min_delay-10_max_delay-10_seed-0-")]
  assert len(runs) == 1
  results = sweep_launch.run_submitit(runs, str(tmp_path / "submitit"), cluster="local", partition="",
                               timeout_min=10, gpus_per_job=0, array_parallelism=1)
  assert results == [{"name": runs[0].name, "status": "done"}]
  assert runs[0].finished
