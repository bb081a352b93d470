"""The training loop under faults and user mistakes (issue 14), through `train_and_evaluate`
on the seconds-long copy/LSTM config: damaged state never adopted, keep-best across resumes,
one writer per workdir, torn metrics, wall time across resumes, a full disk, settings that
would do nothing or are not finite, fields changed on resume, the CLI's one-line errors."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from seqresearch import build
from seqresearch import checkpointing
from seqresearch import metric_writer
from seqresearch import train
from seqresearch import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _leaves(workdir, step=None) -> list[np.ndarray]:
  _, _, state = train.load_run(str(workdir), step=step)
  return [np.asarray(x) for x in jax.tree.leaves(state)]


def _flip_a_byte_of_the_largest_file(step_dir) -> None:
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs]
  path = max(files, key=os.path.getsize)
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0x01
  open(path, "wb").write(bytes(data))


@pytest.mark.slow  # trains a tiny run end to end (9-21 CPU-s)
def test_flipped_byte_in_the_newest_checkpoint_falls_back_and_ends_identical(
    tmp_path, tiny_config, capsys):
  config = tiny_config()
  train.train_and_evaluate(config, str(tmp_path))
  reference = _leaves(tmp_path)
  _flip_a_byte_of_the_largest_file(tmp_path / "checkpoints" / "6")
  summary = train.train_and_evaluate(config, str(tmp_path))
  err = capsys.readouterr().err
  assert "step 6 (" in err and "Falling back to step 3" in err
  assert summary["final_step"] == 6
  for a, b in zip(_leaves(tmp_path), reference, strict=True):  # Retrained from step 3.
    np.testing.assert_array_equal(a, b)
  assert os.listdir(str(tmp_path / "checkpoints") + checkpointing.DAMAGED_SUFFIX)


@pytest.mark.slow  # trains a tiny run end to end (9-21 CPU-s)
def test_missing_config_json_with_checkpoints_is_refused(tmp_path, tiny_config):
  train.train_and_evaluate(tiny_config(), str(tmp_path))
  os.remove(tmp_path / "config.json")
  other = tiny_config()
  other.optimizer.learning_rate = 0.5
  with pytest.raises(ValueError, match="holds checkpoints but no config.json"):
    train.train_and_evaluate(other, str(tmp_path))
  assert not os.path.exists(tmp_path / "config.json")


@pytest.mark.slow  # trains a tiny run end to end (9-21 CPU-s)
def test_replaced_config_json_is_detected_by_the_checkpoint(tmp_path, tiny_config):
  """config.json rewritten to match another config: the checkpoints know what wrote them."""
  train.train_and_evaluate(tiny_config(), str(tmp_path))
  os.remove(tmp_path / "summary.json")
  other = tiny_config()
  other.task.max_delay = 7
  saved = json.load(open(tmp_path / "config.json"))
  saved["task"]["max_delay"] = 7
  json.dump(saved, open(tmp_path / "config.json", "w"))
  with pytest.raises(ValueError, match=r"checkpoint step 6 .*task.max_delay: 6 there, 7 now"):
    train.train_and_evaluate(other, str(tmp_path))


@pytest.mark.slow  # trains a tiny run end to end (9-21 CPU-s)
def test_second_writer_is_refused_with_the_holders_pid(tmp_path, tiny_config):
  holder = subprocess.Popen(
      [sys.executable, "-c",
       "import time; from seqresearch import workdir as w; "
       f"lock = w.WriterLock({str(tmp_path)!r}); print('locked', flush=True); time.sleep(60)"],
      stdout=subprocess.PIPE, text=True, cwd=ROOT)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(workdir_lib.WorkdirInUseError, match=f"process {holder.pid} "):
      train.train_and_evaluate(tiny_config(), str(tmp_path))
  finally:
    holder.kill()
    holder.wait()
  train.train_and_evaluate(tiny_config(), str(tmp_path))  # The dead holder blocks nothing.


@pytest.mark.slow  # trains a tiny run end to end (9-21 CPU-s)
def test_resume_after_torn_metrics_line_and_longer_run_keeps_best_and_wall_time(
    tmp_path, tiny_config):
  """Killed mid-write (torn last line), resumed with more steps: the torn line is dropped,
  the best evaluated step is still kept, and wall time adds up over both processes."""
  config = tiny_config()
  config.checkpoint_every_steps = config.eval_every_steps = 1
  config.keep_checkpoints, config.keep_best_checkpoints = 1, 1
  first = train.train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 7, "split": "tra')
  longer = tiny_config()
  longer.checkpoint_every_steps = longer.eval_every_steps = 1
  longer.keep_checkpoints, longer.keep_best_checkpoints = 1, 1
  longer.num_train_steps = 9
  second = train.train_and_evaluate(longer, str(tmp_path))
  lines = metric_writer.read_metrics(str(tmp_path))
  assert [m["step"] for m in lines if m["split"] == "eval"] == list(range(10))
  accuracy = {m["step"]: m["accuracy"] for m in lines if m["split"] == "eval" and m["step"]}
  kept = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert kept[-1] == 9 and len(kept) <= 2
  assert max(accuracy[s] for s in kept) == max(accuracy.values())
  assert second["wall_time_sec"] > first["wall_time_sec"]
  changes = json.load(open(tmp_path / "config_changes.json"))
  assert {"step": 6, "field": "num_train_steps", "before": 6, "after": 9} in changes
  # Rerunning the finished run changes neither its files nor its wall time.
  before = {f: open(tmp_path / f).read() for f in ("metrics.jsonl", "summary.json")}
  again = train.train_and_evaluate(longer, str(tmp_path))
  assert again["wall_time_sec"] == second["wall_time_sec"]
  assert before == {f: open(tmp_path / f).read() for f in ("metrics.jsonl", "summary.json")}


@pytest.mark.slow  # trains a tiny run end to end (9-21 CPU-s)
def test_nan_advice_can_be_followed_by_resuming_with_a_lower_learning_rate(
    tmp_path, tiny_config):
  config = tiny_config()
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 1e38  # Overflows float32 weights within a few steps.
  config.num_train_steps = 12
  with pytest.raises(train.NonFiniteLossError, match="resume"):
    train.train_and_evaluate(config, str(tmp_path))
  config.optimizer.learning_rate = 1e-3
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["final_step"] == 12 and np.isfinite(summary["eval"]["loss"])
  changes = json.load(open(tmp_path / "config_changes.json"))
  assert [(c["field"], c["after"]) for c in changes] == [("optimizer.learning_rate", 1e-3)]
  assert summary["config_changes"] == changes


@pytest.mark.slow  # trains a tiny run end to end (9-21 CPU-s)
def test_fewer_steps_than_already_trained_is_refused(tmp_path, tiny_config):
  train.train_and_evaluate(tiny_config(), str(tmp_path))
  shorter = tiny_config()
  shorter.num_train_steps = 3
  with pytest.raises(ValueError, match=r"num_train_steps=3: .*step 6"):
    train.train_and_evaluate(shorter, str(tmp_path))


@pytest.mark.slow  # trains a tiny run end to end (9-21 CPU-s)
def test_disk_full_during_a_checkpoint_is_one_line(tmp_path, tiny_config, monkeypatch):
  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(ocp.CheckpointManager, "save", full)
  with pytest.raises(workdir_lib.DiskFullError) as err:
    train.train_and_evaluate(tiny_config(), str(tmp_path))
  assert "\n" not in str(err.value)
  assert str(tmp_path / "checkpoints") in str(err.value) and "needs about" in str(err.value)


@pytest.mark.parametrize("field,value", [
    ("optimizer.learning_rate", float("inf")), ("optimizer.grad_clip_norm", float("nan")),
    ("model.forget_bias", float("nan")), ("optimizer.weight_decay", float("inf"))])
def test_non_finite_settings_are_refused_naming_the_field(tmp_path, tiny_config, field, value):
  config = tiny_config()
  group, leaf = field.split(".")
  config[group][leaf] = value
  with pytest.raises(ValueError, match=rf"{field}={value}: must be a finite number"):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.parametrize("changes,message", [
    ({"optimizer.weight_decay": 0.1}, r"optimizer.weight_decay=0.1: .*adamw"),
    ({"optimizer.min_lr_ratio": 0.1}, r"optimizer.min_lr_ratio=0.1: .*cosine"),
])
def test_settings_that_would_do_nothing_are_refused(tmp_path, tiny_config, changes, message):
  config = tiny_config()
  for field, value in changes.items():
    group, leaf = field.split(".")
    config[group][leaf] = value
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path))


def test_warmup_longer_than_the_run_is_warned(tiny_config, capsys):
  config = tiny_config()
  config.optimizer.warmup_steps = 10
  build.validate_run(config, warn=True)
  assert "optimizer.warmup_steps=10" in capsys.readouterr().err
  config.optimizer.warmup_steps = 6
  build.validate_run(config, warn=True)
  assert capsys.readouterr().err == ""


def test_keep_best_without_a_checkpoint_at_an_evaluation_is_warned(tiny_config, capsys):
  config = tiny_config()
  config.num_train_steps, config.eval_every_steps, config.checkpoint_every_steps = 20, 4, 5
  build.validate_run(config, warn=True)
  assert "keep_best_checkpoints=1" in capsys.readouterr().err
  config.checkpoint_every_steps = 8
  build.validate_run(config, warn=True)
  assert capsys.readouterr().err == ""


@pytest.mark.parametrize("args,expected", [
    (["--config=configs/copy.py:lstm,tiny", "--config.optimizer.learnig_rate=0.1"],
     r"--config.optimizer.learnig_rate.*learning_rate"),
    (["--config=configs/copy.py:lstm,tiny", "--config.batch_size=abc"], r"batch_size.*abc"),
    (["--config=configs/copy.py:lstmm,tiny"], r"'lstmm': not a model name"),
    (["--config=configs/copy.py:lstm,tiny", "--config.optimizer.learning_rate=inf"],
     r"optimizer.learning_rate=inf: must be a finite number"),
])
def test_cli_user_errors_are_one_line_and_exit_2(tmp_path, args, expected):
  proc = subprocess.run([sys.executable, "-m", "seqresearch.train_cli", *args,
                         f"--workdir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert re.search(expected, lines[0]), lines[0]
