"""The configs of the recall/capacity tasks (MQAR, selective copy, induction, long copy, adding):
every model and sweep entry validates, the options do what they say, bad values fail clearly,
and the tiny variant trains end to end for a recurrent model and the Transformer."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from seqresearch import build
from seqresearch import metric_writer
from seqresearch import models
from seqresearch import sweep
from seqresearch import train

TASK_CONFIGS = ("mqar", "selective_copy", "induction", "long_copy", "adding")


def _config(name: str, arg: str):
  config = importlib.import_module(f"configs.{name}").get_config(arg)
  config.lock()
  return config


@pytest.mark.parametrize("name", TASK_CONFIGS)
@pytest.mark.parametrize("model", models.names())
@pytest.mark.parametrize("extra", ["", ",tiny"])
def test_every_model_validates(name, model, extra):
  config = _config(name, model + extra)
  run = build.validate_run(config)
  assert config.task.name == name and config.model.name == model
  assert run.seq_len == run.task.seq_len and 0 < run.task.chance_accuracy < 1
  # Every task field has a concrete value (None could not be overridden from the command line).
  assert all(value is not None for value in config.task.values())


@pytest.mark.parametrize("name", TASK_CONFIGS)
@pytest.mark.parametrize("arg", ["", "tiny"])
def test_every_sweep_entry_builds(tmp_path, name, arg):
  entries = importlib.import_module(f"configs.{name}").get_sweep(arg)
  assert {e["model"] for e in entries} == set(models.names())
  runs = sweep.expand(f"configs/{name}.py", arg, str(tmp_path))  # raises on an invalid entry
  assert len(runs) == len(entries)


def test_mqar_options():
  config = _config("mqar", "gru,pairs=16")
  assert config.task.num_pairs == 16 and config.task.length == 64
  task = build.validate_run(_config("mqar", "transformer,pairs=4,distance=40")).task
  assert task.trained_distances == (40, 40) and task.seq_len == 64
  assert build.validate_run(_config("mqar", "lstm,tiny,pairs=5")).task.length == 20
  assert build.validate_run(_config("mqar", "lstm,pairs=4,distance=70")).task.length == 78


def test_selective_copy_options():
  task = build.validate_run(_config("selective_copy", "rnn,context=128")).task
  assert task.trained_distances == (8, 128)
  task = build.validate_run(_config("selective_copy", "transformer,tiny,distance=40")).task
  assert task.trained_distances == (40, 40) and task.context_len == 40


def test_induction_options():
  task = build.validate_run(_config("induction", "gru,length=128")).task
  assert task.trained_distances == (1, 126)
  task = build.validate_run(_config("induction", "transformer,tiny,distance=40")).task
  assert task.trained_distances == (40, 40) and task.length == 42


def test_long_copy_options():
  task = build.validate_run(_config("long_copy", "lstm,length=40")).task
  assert task.trained_distances == (40, 40) and task.seq_len == 80


def test_adding_options():
  task = build.validate_run(_config("adding", "gru,distance=70")).task
  assert task.trained_distances == (70, 70) and task.length == 71


@pytest.mark.parametrize("name,arg,message", [
    ("adding", "lstm,distance=10", "task.fixed_distance=10"),
    ("long_copy", "lstm,min_length=0", "task.min_length=0"),
    ("induction", "lstm,length=2", "task.length=2"),
    ("selective_copy", "lstm,context=4", "task.context_len=4"),
    ("selective_copy", "lstm,distance=100,context_len=64", "task.fixed_distance=100"),
    ("mqar", "lstm,num_pairs=0", "task.num_pairs=0"),
    ("mqar", "lstm,pairs=8,length=20", "task.length=20"),
    ("mqar", "lstm,distance=3", "task.fixed_distance=3"),
])
def test_bad_task_values_name_the_field(name, arg, message):
  with pytest.raises(ValueError, match=message):
    build.validate_run(_config(name, arg))


def _end_to_end_cases():
  """Every task with a recurrent model and with attention; the default suite keeps one case
  (8-16 CPU-s each), the slow suite the rest (each case compiles and trains a model)."""
  pair = (models.names("recurrent")[1], models.names("attention")[0])
  default = {("adding", pair[0])}  # a regression task
  return [pytest.param(name, model, marks=() if (name, model) in default else pytest.mark.slow)
          for name in TASK_CONFIGS for model in pair]


@pytest.mark.parametrize("name,model", _end_to_end_cases())
def test_tiny_config_trains_end_to_end(tmp_path, tiny_config, name, model):
  config = tiny_config(f"configs/{name}.py", f"{model},tiny")
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["final_step"] == config.num_train_steps
  evals = [m for m in metric_writer.read_metrics(str(tmp_path)) if m["split"] == "eval"]
  assert [m["step"] for m in evals] == [0, 3, 6]
  last = evals[-1]
  assert np.isfinite(last["loss"]) and 0 <= last["accuracy"] <= 1
  task = build.validate_run(config).task
  low, high = task.trained_distances
  assert {int(d) for d in last["accuracy_by_distance"]} <= set(range(low, high + 1))
  for key, value in task.eval_constants().items():
    assert last[key] == value
