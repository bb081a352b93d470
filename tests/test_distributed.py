"""Two CPU processes on this machine form one job (jax.distributed) and train one model."""

from __future__ import annotations

import os
import socket
import subprocess

import numpy as np
import pytest

from conftest import ROOT, run_script
from seqresearch import distributed
from seqresearch import metric_writer
from seqresearch import train


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


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
  with pytest.raises(ValueError, match="num_processes=2 needs a coordinator_address"):
    distributed.initialize("", 2, 0)
  with pytest.raises(ValueError, match=r"process_id=2: must be in \[0, 2\)"):
    distributed.initialize("localhost:1", 2, 2)
