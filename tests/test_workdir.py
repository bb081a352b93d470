"""The workdir contract under faults: writer lock, missing config.json, fields changed on resume,
torn metrics lines, wall time across processes, a full disk. No training: seconds."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time

import pytest
from ml_collections import config_dict

from seqresearch import metric_writer
from seqresearch import workdir as workdir_lib


def _config(**changes) -> config_dict.ConfigDict:
  config = config_dict.ConfigDict({
      "seed": 0, "num_train_steps": 6, "eval_every_steps": 3, "checkpoint_every_steps": 3,
      "log_every_steps": 2, "progress_bar": False, "host_allocator": "auto",
      "task": {"name": "copy", "max_delay": 6},
      "optimizer": {"learning_rate": 1e-3, "grad_clip_norm": 1.0}})
  for path, value in changes.items():
    group, _, leaf = path.rpartition(".")
    (config[group] if group else config)[leaf] = value
  return config


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c",
       "import sys, time; from seqresearch import workdir as w; "
       f"lock = w.WriterLock({str(tmp_path)!r}); print('locked', flush=True); time.sleep(60)"],
      stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(workdir_lib.WorkdirInUseError, match=f"process {holder.pid} on "):
      workdir_lib.prepare(_config(), str(tmp_path), restart=False)
  finally:
    holder.kill()
    holder.wait()
  # A dead holder's lock does not block: the kernel dropped it with the process.
  lock, _ = workdir_lib.prepare(_config(), str(tmp_path), restart=False)
  assert f"process {os.getpid()} " in open(tmp_path / workdir_lib.LOCK_FILE).read()
  with pytest.raises(workdir_lib.WorkdirInUseError):  # Also within one process.
    workdir_lib.prepare(_config(), str(tmp_path), restart=False)
  lock.release()
  workdir_lib.prepare(_config(), str(tmp_path), restart=False)[0].release()


def test_checkpoints_without_config_json_are_refused(tmp_path):
  os.makedirs(tmp_path / "checkpoints" / "3")
  with pytest.raises(ValueError, match=r"holds checkpoints but no config.json"):
    workdir_lib.prepare(_config(), str(tmp_path), restart=False)
  assert not os.path.exists(tmp_path / "config.json")  # Nothing adopted.
  # --restart moves them aside instead.
  workdir_lib.prepare(_config(), str(tmp_path), restart=True)[0].release()
  assert not os.path.exists(tmp_path / "checkpoints")
  moved = [d for d in os.listdir(tmp_path.parent) if d.startswith(tmp_path.name + ".old-")]
  assert len(moved) == 1 and os.path.isdir(tmp_path.parent / moved[0] / "checkpoints" / "3")


def test_damaged_config_json_is_refused_naming_the_file(tmp_path):
  workdir_lib.prepare(_config(), str(tmp_path), restart=False)[0].release()
  text = open(tmp_path / "config.json").read()
  open(tmp_path / "config.json", "w").write(text[: len(text) // 2])
  with pytest.raises(ValueError, match=r"config.json is not valid JSON \(line \d+"):
    workdir_lib.prepare(_config(), str(tmp_path), restart=False)


def test_declared_fields_may_change_on_resume_and_are_recorded(tmp_path):
  workdir_lib.prepare(_config(), str(tmp_path), restart=False)[0].release()
  lowered = _config(**{"optimizer.learning_rate": 1e-4, "num_train_steps": 12})
  lock, changes = workdir_lib.prepare(lowered, str(tmp_path), restart=False)
  lock.release()
  assert {c["field"] for c in changes} == {"optimizer.learning_rate", "num_train_steps"}
  # config.json changes only once the step is known and the change recorded.
  assert json.load(open(tmp_path / "config.json"))["num_train_steps"] == 6
  recorded = workdir_lib.record_changes(lowered, str(tmp_path), 3, changes)
  assert {"step": 3, "field": "optimizer.learning_rate", "before": 1e-3,
          "after": 1e-4} in recorded
  assert json.load(open(tmp_path / "config_changes.json")) == recorded
  assert json.load(open(tmp_path / "config.json"))["optimizer"]["learning_rate"] == 1e-4
  # Other fields are still refused, and so is turning clipping off (changes the state).
  for field, value in (("task.max_delay", 7), ("optimizer.grad_clip_norm", 0.0)):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
      workdir_lib.prepare(_config(**{field: value}), str(tmp_path), restart=False)


def _write_lines(path, lines, tail=""):
  with open(path, "w") as f:
    f.writelines(json.dumps(m) + "\n" for m in lines)
    f.write(tail)


LINES = [{"step": s, "split": "train", "seed": 0, "loss": 1.0 / s} for s in (2, 4, 6)]


def test_torn_last_metrics_line_is_dropped_on_resume(tmp_path, capsys):
  _write_lines(tmp_path / "metrics.jsonl", LINES, tail='{"step": 8, "split": "tr')
  assert metric_writer.read_metrics(str(tmp_path)) == LINES
  writer = metric_writer.MetricWriter(str(tmp_path), resume_step=4)
  writer.write(6, "train", {"loss": 0.5}, seed=0)
  writer.close()
  assert "torn last line" in capsys.readouterr().err
  lines = metric_writer.read_metrics(str(tmp_path))
  assert [m["step"] for m in lines] == [2, 4, 6] and lines[-1]["loss"] == 0.5
  assert open(tmp_path / "metrics.jsonl").read().endswith("\n")


@pytest.mark.parametrize("bad,line", [("not json\n", 2), ('[1, 2]\n', 2), ('{"step": "x"}\n', 2)])
def test_other_metrics_damage_is_refused_with_file_and_line(tmp_path, bad, line):
  path = tmp_path / "metrics.jsonl"
  with open(path, "w") as f:
    f.write(json.dumps(LINES[0]) + "\n" + bad + json.dumps(LINES[1]) + "\n")
  with pytest.raises(metric_writer.MetricsFileError, match=rf"metrics.jsonl, line {line}:"):
    metric_writer.MetricWriter(str(tmp_path), resume_step=4)
  with pytest.raises(metric_writer.MetricsFileError, match=rf"line {line}"):
    metric_writer.read_metrics(str(tmp_path))


def test_wall_time_accumulates_over_processes(tmp_path):
  first = workdir_lib.WallClock(str(tmp_path))
  time.sleep(0.2)
  spent = first.save()
  second = workdir_lib.WallClock(str(tmp_path))
  assert second.total() >= spent >= 0.2
  time.sleep(0.1)
  assert second.save() >= spent + 0.1


def test_disk_full_on_a_metrics_write_is_one_line(tmp_path, monkeypatch):
  writer = metric_writer.MetricWriter(str(tmp_path), resume_step=None)

  class Full:
    def write(self, text):
      raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
      pass

    def close(self):
      pass

  monkeypatch.setattr(writer, "_file", Full())
  with pytest.raises(workdir_lib.DiskFullError) as err:
    writer.write(2, "train", {"loss": 1.0}, seed=0)
  assert "\n" not in str(err.value)
  assert "metrics.jsonl" in str(err.value) and "free there" in str(err.value)
  writer.close()


def test_disk_full_on_a_json_write_names_the_file(tmp_path, monkeypatch):
  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "replace", full)
  with pytest.raises(workdir_lib.DiskFullError, match=r"summary.json: it needs about \d+ bytes"):
    workdir_lib.write_json(str(tmp_path / "summary.json"), {"a": 1})
