"""Sweeps: expansion, run identity (whole resolved config), seeds counted once, typed values."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import textwrap

import pytest
from absl import flags
from ml_collections import config_flags

from seqresearch import models
from seqresearch import sweep
from seqresearch import workdir as workdir_lib
from seqresearch.analysis import fits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP_CONFIGS = ("configs/copy.py", "configs/agreement.py")

# A copy of configs/copy.py with its own get_sweep (the body is the test's).
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
  """Writes a sweep config file whose get_sweep returns `entries` (Python source)."""

  def make(entries: str, name: str = "sweep_config.py") -> str:
    path = tmp_path / name
    path.write_text(SWEEP_FILE.format(root=ROOT, entries=entries))
    return str(path)

  return make


def _fake_finish(run: sweep.Run, accuracy_by_seed: dict[int, float]) -> None:
  """Writes what a finished training run leaves: its config.json and summary.json."""
  os.makedirs(run.workdir, exist_ok=True)
  workdir_lib.write_json(os.path.join(run.workdir, workdir_lib.CONFIG_FILE), run.config)
  by_seed = {str(s): {"accuracy": a, "sequence_accuracy": a / 2, "loss": 1.0 - a,
                      "accuracy_by_distance": {"13": a}} for s, a in accuracy_by_seed.items()}
  workdir_lib.write_json(os.path.join(run.workdir, workdir_lib.SUMMARY_FILE),
                         {"eval_by_seed": by_seed})


def _strict_json(path) -> object:
  def refuse(constant):
    raise ValueError(f"{path}: non-standard JSON constant {constant}")
  return json.loads(open(path).read(), parse_constant=refuse)


@pytest.mark.parametrize("path", SWEEP_CONFIGS)
def test_every_sweep_entry_builds(tmp_path, path):
  for arg in (None, "tiny"):
    runs = sweep.expand(os.path.join(ROOT, path), arg, str(tmp_path))
    assert len({r.name for r in runs}) == len(runs) >= 8
    assert all(r.workdir == str(tmp_path / r.name) and not r.error for r in runs)


def test_run_names_are_readable_and_unique():
  assert sweep.run_name({"model": "lstm", "task.max_delay": 100, "seed": 0}) == \
      "model-lstm_max_delay-100_seed-0"
  # Two keys with the same last component keep their full paths.
  assert sweep.run_name({"task.x": 1, "model.x": 2}) == "task.x-1_model.x-2"


def test_options_of_the_config_argument_are_part_of_a_runs_identity(tmp_path, sweep_file):
  # Issue 16, reproduction 1: a finished sweep at copy_length 10 must not be reused for 4.
  path = sweep_file('[{"seed": s} for s in (0, 1)]')
  first = sweep.expand(path, "lstm,tiny", str(tmp_path))
  for run in first:
    _fake_finish(run, {run.seeds[0]: 0.5})
  second = sweep.expand(path, "lstm,tiny,copy_length=4", str(tmp_path))
  assert [r.config["task"]["copy_length"] for r in second] == [4, 4]
  assert not any(r.finished for r in second)
  assert {r.name for r in first}.isdisjoint(r.name for r in second)
  # The readable part stays; the hash differs.
  assert [r.name.rsplit("-", 1)[0] for r in second] == ["model-lstm_seed-0", "model-lstm_seed-1"]
  # The same sweep again finds its own runs finished.
  assert all(r.finished for r in sweep.expand(path, "lstm,tiny", str(tmp_path)))

  # The shipped sweeps: the smoke and the full copy sweep share no run directory.
  copy = os.path.join(ROOT, "configs", "copy.py")
  tiny = {r.name for r in sweep.expand(copy, "tiny", str(tmp_path))}
  full = {r.name for r in sweep.expand(copy, None, str(tmp_path))}
  assert len(tiny) == len(full) == 9 * len(models.MODEL_NAMES) and tiny.isdisjoint(full)


def test_presentation_fields_are_not_identity(sweep_file, tmp_path):
  plain = sweep.expand(sweep_file('[{"seed": 0}]'), "lstm,tiny", str(tmp_path))[0]
  logged = sweep.expand(sweep_file('[{"seed": 0, "log_every_steps": 1, "progress_bar": False}]',
                                   "logged.py"), "lstm,tiny", str(tmp_path))[0]
  assert plain.name.rsplit("-", 1)[1] == logged.name.rsplit("-", 1)[1]
  assert plain.setting == logged.setting


def test_a_finished_run_with_another_config_is_refused_naming_the_field(tmp_path, sweep_file):
  path = sweep_file('[{"seed": 0}]')
  run = sweep.expand(path, "lstm,tiny", str(tmp_path))[0]
  _fake_finish(run, {0: 0.5})
  recorded = dict(run.config, num_train_steps=run.config["num_train_steps"] + 1)
  workdir_lib.write_json(os.path.join(run.workdir, workdir_lib.CONFIG_FILE), recorded)
  with pytest.raises(ValueError, match=r"num_train_steps: 7 there, 6 now"):
    sweep.expand(path, "lstm,tiny", str(tmp_path))


def test_overlapping_seed_ranges_are_refused_naming_both_runs(tmp_path, sweep_file):
  # Issue 16, reproduction 2: {seed 0, num_seeds 2} and {seed 1, num_seeds 2} both train seed 1.
  path = sweep_file('[{"seed": s, "num_seeds": 2} for s in (0, 1)]')
  with pytest.raises(ValueError, match=r"model-lstm_seed-0_num_seeds-2-\w+ \(seeds \[0, 1\]\) "
                                       r"and model-lstm_seed-1_num_seeds-2-\w+ \(seeds \[1, 2\]\)"
                                       r".*seed\(s\) \[1\]"):
    sweep.expand(path, "lstm,tiny", str(tmp_path))
  # Stepping the seed axis by num_seeds is accepted; each run lists its seeds.
  path = sweep_file('[{"seed": s, "num_seeds": 2} for s in (0, 2)]', "stepped.py")
  runs = sweep.expand(path, "lstm,tiny", str(tmp_path))
  assert [r.seeds for r in runs] == [(0, 1), (2, 3)]
  assert len({r.setting for r in runs}) == 1
  # Another setting may reuse the seed ids.
  path = sweep_file('[{"seed": 0, "task.copy_length": n} for n in (3, 4)]', "two.py")
  assert len({r.setting for r in sweep.expand(path, "lstm,tiny", str(tmp_path))}) == 2


def test_summary_pools_one_sample_per_seed_id_and_records_the_seeds(tmp_path, sweep_file):
  # Runs made to overlap (e.g. by hand, outside expand's check): seed 1 must count once.
  path = sweep_file('[{"seed": s, "num_seeds": 2} for s in (0, 2)]')
  runs = sweep.expand(path, "lstm,tiny", str(tmp_path))
  overlapping = dataclasses.replace(runs[1], seeds=(1, 2))
  _fake_finish(runs[0], {0: 0.10, 1: 0.20})
  _fake_finish(overlapping, {1: 0.20, 2: 0.12})
  rows = sweep.summarize([runs[0], overlapping], str(tmp_path))
  assert len(rows) == 1
  row = rows[0]
  mean, half = fits.mean_ci([0.10, 0.20, 0.12])
  assert row["seeds"] == [0, 1, 2] and row["num_seeds"] == 3
  assert row["accuracy_mean"] == pytest.approx(mean)
  assert row["accuracy_ci95"] == pytest.approx(half)
  assert row["accuracy_by_distance"]["13"]["mean"] == pytest.approx(mean)
  assert _strict_json(tmp_path / "summary.json")[0]["seeds"] == [0, 1, 2]
  header, line = open(tmp_path / "summary.csv").read().splitlines()[:2]
  assert dict(zip(header.split(","), line.split(",")))["seeds"] == "0 1 2"
  assert "3 seeds [0, 1, 2]" in sweep.format_rows(rows)


def test_summary_json_has_null_and_a_reason_instead_of_nan(tmp_path, sweep_file):
  path = sweep_file('[{"seed": 0}, {"seed": 0, "task.copy_length": 3}]')
  one, diverged = sweep.expand(path, "lstm,tiny", str(tmp_path))
  _fake_finish(one, {0: 0.5})
  _fake_finish(diverged, {0: math.nan})
  rows = {r["setting"]: r for r in sweep.summarize([one, diverged], str(tmp_path))}
  assert len(_strict_json(tmp_path / "summary.json")) == 2
  assert rows[one.setting]["accuracy_mean"] == 0.5
  assert rows[one.setting]["accuracy_ci95"] is None
  assert rows[one.setting]["accuracy_null_reason"] == "one seed: no interval"
  assert rows[diverged.setting]["accuracy_mean"] is None
  assert rows[diverged.setting]["accuracy_null_reason"] == "1 of 1 seeds non-finite"
  assert "accuracy 0.5000 (one seed: no interval)" in sweep.format_rows(list(rows.values()))


def test_a_model_in_the_argument_restricts_the_sweep(tmp_path, sweep_file):
  copy = os.path.join(ROOT, "configs", "copy.py")
  runs = sweep.expand(copy, "lstm", str(tmp_path))
  assert len(runs) == 9 and {r.model for r in runs} == {"lstm"}
  assert all(r.config["model"]["name"] == "lstm" for r in runs)
  assert len(sweep.expand(copy, "tiny", str(tmp_path))) == 9 * len(models.MODEL_NAMES)
  # Entries without a model take the argument's.
  path = sweep_file('[{"seed": 0}]')
  assert sweep.expand(path, "gru,tiny", str(tmp_path))[0].config["model"]["name"] == "gru"
  # A model the sweep does not list is refused, naming the ones it does.
  path = sweep_file('[{"model": "lstm", "seed": 0}, {"model": "gru", "seed": 0}]', "two.py")
  with pytest.raises(ValueError, match=r"names model 'rnn'.*lists only \['gru', 'lstm'\]"):
    sweep.expand(path, "rnn,tiny", str(tmp_path))


def _child_config(run: sweep.Run):
  """The config the child process builds from run.command() (ml_collections' own parsing)."""
  argv = ["train", *[a for a in run.command()[3:] if not a.startswith("--workdir")]]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True,
                                  sys_argv=argv)
  values(argv)
  return json.loads(values.config.to_json_best_effort())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # config_flags' load_module
def test_sweep_values_are_typed_and_round_trip_through_the_command_line(tmp_path, sweep_file):
  path = sweep_file('''[{"seed": 3, "optimizer.learning_rate": 0.1 + 0.2,
                         "optimizer.min_lr_ratio": 1e-07, "optimizer.momentum": 0,
                         "optimizer.schedule": "cosine", "progress_bar": False,
                         "task.copy_length": 4}]''')
  run = sweep.expand(path, "lstm,tiny", str(tmp_path))[0]
  opt = run.config["optimizer"]
  assert opt["learning_rate"] == 0.1 + 0.2 == 0.30000000000000004
  assert opt["min_lr_ratio"] == 1e-07 and opt["momentum"] == 0.0
  assert isinstance(opt["momentum"], float)
  child = _child_config(run)
  assert child == {**run.config, "progress_bar": False}
  assert child["optimizer"]["learning_rate"] == 0.30000000000000004


@pytest.mark.parametrize("entry, message", [
    ('{"task.copy_length": 4.5}', r"task.copy_length=4.5: the field holds a int"),
    ('{"task.copy_length": True}', r"task.copy_length=True: the field holds a int"),
    ('{"optimizer.learning_rate": "1e-3"}', r"learning_rate='1e-3': the field holds a float"),
    ('{"optimizer.learning_rate": [1e-3]}', r"must be one of bool, int, float, str"),
    ('{"model.hidden_size": -1}', r"hidden_size=-1"),
    ('{"task.no_such_field": 1}', r"no field 'no_such_field'"),
])
def test_a_bad_sweep_value_fails_before_running(tmp_path, sweep_file, entry, message):
  path = sweep_file(f"[{entry}]")
  with pytest.raises(ValueError, match=r"sweep run model-lstm_\S+: .*" + message):
    sweep.expand(path, "lstm,tiny", str(tmp_path / "sweep"))
  runs = sweep.expand(path, "lstm,tiny", str(tmp_path / "sweep"), keep_invalid=True)
  assert len(runs) == 1 and runs[0].error and not os.path.exists(tmp_path / "sweep")


def test_a_diverged_seed_written_as_null_is_counted_not_dropped():
  row = sweep._statistic("accuracy", [0.5, None, 0.7])  # pylint: disable=protected-access
  assert row["accuracy_mean"] is None
  assert row["accuracy_null_reason"] == "1 of 3 seeds non-finite"
