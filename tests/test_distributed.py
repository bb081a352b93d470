"""Two CPU processes on this machine form one job (jax.distributed) and train one model;
SLURM variables without srun run one process or fail fast, never hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from seqresearch import distributed
from seqresearch import metric_writer
from seqresearch import train


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A 2-task SLURM allocation as an sbatch script sees it (no srun step variables).
SLURM_BATCH = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_NODELIST": "node001",
               "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
# ... and as a task of a 2-task srun step sees it.
SLURM_STEP = {**SLURM_BATCH, "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "node001"}


def run_script(args: list[str]) -> list[str]:
  return [sys.executable, os.path.join(ROOT, "scripts", "train.py"), *args]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow  # training in child processes (17-45 CPU-s)
def test_two_processes_train_the_same_model_as_one(tmp_path, tiny_config):
  single = tmp_path / "single"
  train.train_and_evaluate(tiny_config(), str(single))

  multi = tmp_path / "multi"
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  procs = []
  for pid in range(2):
    log = open(tmp_path / f"process{pid}.log", "w")
    args = ["--config=configs/copy.py:lstm,tiny", f"--workdir={multi}",
            "--config.progress_bar=false", f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2", f"--process_id={pid}"]
    procs.append(subprocess.Popen(run_script(args), cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT))
  for pid, proc in enumerate(procs):
    assert proc.wait(timeout=300) == 0, (tmp_path / f"process{pid}.log").read_text()
  assert "connected to 1 peer" in (tmp_path / "process0.log").read_text()

  # One writer (process 0): the same lines as the single-process run, none twice, and the
  # global batch's loss equals the single process's.
  ours, theirs = metric_writer.read_metrics(str(multi)), metric_writer.read_metrics(str(single))
  assert [(m["step"], m["split"]) for m in ours] == [(m["step"], m["split"]) for m in theirs]
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)


def test_bad_process_settings_fail_clearly():
  with pytest.raises(distributed.LaunchError, match="num_processes=2 needs a coordinator_address"):
    distributed.initialize("", 2, 0)
  with pytest.raises(ValueError, match=r"process_id=2: must be in \[0, 2\)"):
    distributed.initialize("localhost:1", 2, 2)


def _initialize_in(env: dict[str, str], num_processes: int | None) -> subprocess.CompletedProcess:
  """Calls initialize in a fresh process with `env` added; a hang fails the test (timeout)."""
  code = ("import jax\nfrom seqresearch import distributed\n"
          "try:\n"
          f"  distributed.initialize(num_processes={num_processes})\n"
          "except distributed.LaunchError as e:\n"
          "  print(e); raise SystemExit(2)\n"
          "print('processes', jax.process_count())\n")
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", **env}, timeout=120)


def test_slurm_variables_without_srun_fail_fast_saying_how_to_opt_out():
  result = _initialize_in(SLURM_BATCH, None)
  assert result.returncode == 2, result.stdout + result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 1
  assert "SLURM_NTASKS=2 but this process was not started by srun" in lines[0]
  assert "--num_processes=1" in lines[0]


@pytest.mark.parametrize("env", [SLURM_BATCH, SLURM_STEP], ids=["batch", "srun_step"])
def test_num_processes_1_runs_one_process_whatever_slurm_says(env):
  result = _initialize_in(env, 1)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "processes 1" in result.stdout


def test_no_slurm_is_one_process():
  clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
  code = "from seqresearch import distributed; distributed.initialize(); print('ok')"
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, env={**clean, "JAX_PLATFORMS": "cpu"}, timeout=120)
  assert result.returncode == 0 and "ok" in result.stdout, result.stderr


@pytest.mark.slow  # training in child processes (17-45 CPU-s)
def test_training_with_slurm_variables_and_num_processes_1(tmp_path):
  # Issue 14 item 15: this was `ValueError: coordinator_address should be defined`.
  result = subprocess.run(
      run_script(["--config=configs/copy.py:lstm,tiny", f"--workdir={tmp_path / 'run'}",
                  "--config.progress_bar=false", "--num_processes=1"]),
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "JAX_PLATFORMS": "cpu", **SLURM_BATCH})
  assert result.returncode == 0, result.stdout + result.stderr
  assert (tmp_path / "run" / "summary.json").exists()


def test_train_command_with_slurm_variables_without_srun_fails_fast_in_one_line(tmp_path):
  # Issue 14 item 15: with a 2-task SLURM environment and plain `python`, the default
  # (num_processes unset) used to hang waiting for a second process, or run alone silently.
  result = subprocess.run(
      run_script(["--config=configs/copy.py:lstm,tiny", f"--workdir={tmp_path / 'run'}"]),
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env={**os.environ, "JAX_PLATFORMS": "cpu", **SLURM_BATCH})
  assert result.returncode == 2, result.stdout + result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "--num_processes=1" in lines[0], result.stderr
  assert not (tmp_path / "run").exists()
