"""The training loop and its workdir contract: end to end, resume, faults, refusal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from seqresearch import build
from seqresearch import metric_writer
from seqresearch import models
from seqresearch import steps
from seqresearch import train

TIMING_KEYS = ("steps_per_sec",)


def _deterministic_lines(workdir: str) -> list[dict]:
  return [{k: v for k, v in m.items() if k not in TIMING_KEYS}
          for m in metric_writer.read_metrics(workdir)]


def _params(workdir: str) -> list[np.ndarray]:
  _, _, state = train.load_run(workdir)
  return [np.asarray(x) for x in jax.tree.leaves(state)]


@pytest.mark.parametrize("path,arg", [
    ("configs/copy.py", "lstm,tiny"),
    pytest.param("configs/agreement.py", "transformer,tiny", marks=pytest.mark.slow)])  # 26 CPU-s
def test_tiny_run_writes_the_workdir_contract(tmp_path, tiny_config, path, arg):
  config = tiny_config(path, arg)
  summary = train.train_and_evaluate(config, str(tmp_path))

  assert json.load(open(tmp_path / "config.json"))["task"]["name"] == config.task.name
  lines = metric_writer.read_metrics(str(tmp_path))
  evals = [m for m in lines if m["split"] == "eval"]
  trains = [m for m in lines if m["split"] == "train"]
  assert [m["step"] for m in evals] == [0, 3, 6]  # step 0, every 3, and the end.
  assert [m["step"] for m in trains] == [2, 4, 6]
  # Accuracy by distance covers exactly the configured distances and agrees with the total.
  by_distance = evals[-1]["accuracy_by_distance"]
  if config.task.name == "copy":
    expected = {str(d + config.task.copy_length)
                for d in range(config.task.min_delay, config.task.max_delay + 1)}
    assert evals[-1]["memoryless_baseline_loss"] > 0
  else:
    expected = {str(d) for d in range(config.task.min_distance, config.task.max_distance + 1)}
    assert set(evals[-1]["accuracy_by_attractors"]) <= {"0", "1", "2"}
  assert set(by_distance) == expected
  assert min(by_distance.values()) <= evals[-1]["accuracy"] <= max(by_distance.values())
  assert all(np.isfinite(m["loss"]) for m in lines)

  assert all(m["seed"] == 0 for m in lines)
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(tmp_path / "tensorboard" / "seed_0"))
  assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()) == [3, 6]
  on_disk = json.load(open(tmp_path / "summary.json"))
  assert on_disk["final_step"] == summary["final_step"] == 6
  assert on_disk["eval"] == {k: v for k, v in evals[-1].items()
                             if k not in ("step", "split", "seed")}
  assert {"versions", "device", "wall_time_sec"} <= set(on_disk)


@pytest.mark.slow  # several end-to-end training runs
def test_rerun_of_finished_run_changes_nothing(tmp_path, tiny_config):
  config = tiny_config()
  train.train_and_evaluate(config, str(tmp_path))
  before = open(tmp_path / "metrics.jsonl").read()
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert open(tmp_path / "metrics.jsonl").read() == before
  assert summary["final_step"] == 6


@pytest.mark.slow  # several end-to-end training runs
def test_run_saved_before_a_presentation_field_existed_still_loads_and_resumes(
    tmp_path, tiny_config):
  """A config.json without `host_allocator` (runs from before the field) restores and
  continues: the field takes its default."""
  config = tiny_config()
  train.train_and_evaluate(config, str(tmp_path))
  saved = json.load(open(tmp_path / "config.json"))
  del saved["host_allocator"]
  json.dump(saved, open(tmp_path / "config.json", "w"))
  loaded, model, _ = train.load_run(str(tmp_path))
  assert loaded.host_allocator == "auto" and model is not None  # the default, filled in
  summary = train.train_and_evaluate(config, str(tmp_path))  # finished: nothing to redo
  assert summary["final_step"] == 6


@pytest.mark.slow  # several end-to-end training runs
def test_workdir_with_other_config_is_refused(tmp_path, tiny_config):
  train.train_and_evaluate(tiny_config(), str(tmp_path))
  other = tiny_config()
  other.task.max_delay = 7
  with pytest.raises(ValueError, match=r"task.max_delay: 6 there, 7 now"):
    train.train_and_evaluate(other, str(tmp_path))
  # Presentation-only fields may change on resume.
  same = tiny_config()
  same.log_every_steps = 1
  train.train_and_evaluate(same, str(tmp_path))
  # restart=True moves the old run aside instead of overwriting it.
  train.train_and_evaluate(other, str(tmp_path), restart=True)
  moved = [d for d in os.listdir(tmp_path.parent) if d.startswith(tmp_path.name + ".old-")]
  assert len(moved) == 1
  assert json.load(open(tmp_path.parent / moved[0] / "config.json"))["task"]["max_delay"] == 6


def test_train_step_is_traced_once(tiny_config):
  config = tiny_config()
  run = build.validate_run(config)
  tx = build.make_optimizer(config.optimizer, 10)
  keys = steps.seed_keys(0, 2)
  mesh = steps.data_mesh()
  graphdef, constants, state = steps.init_state(run.model, run.vocab_size, tx, keys["init"])
  state = steps.replicate(state, mesh)
  step = steps.make_train_step(graphdef, constants, tx, run.task, 4, mesh)
  for i in range(6):  # As in the loop: steps with a reset of the metric sums between them.
    state = step(state, keys["data"])
    if i % 2:
      state = steps.reset_sums(state)
  np.testing.assert_array_equal(state.step, [6, 6])
  assert step._cache_size() == 1


@pytest.mark.slow  # several end-to-end training runs
def test_seeds_vmapped_in_one_program_equal_each_seed_alone(tmp_path, tiny_config):
  config = tiny_config()
  config.seed, config.num_seeds = 4, 3
  together = train.train_and_evaluate(config, str(tmp_path / "k3"))
  assert together["seeds"] == [4, 5, 6]
  lines = metric_writer.read_metrics(str(tmp_path / "k3"))
  for k, seed in enumerate([4, 5, 6]):
    alone_config = tiny_config()
    alone_config.seed = seed
    alone = train.train_and_evaluate(alone_config, str(tmp_path / f"s{seed}"))
    ours = [m for m in lines if m["seed"] == seed]
    theirs = metric_writer.read_metrics(str(tmp_path / f"s{seed}"))
    assert [(m["step"], m["split"]) for m in ours] == [(m["step"], m["split"]) for m in theirs]
    for a, b in zip(ours, theirs):
      np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    np.testing.assert_allclose(together["eval_by_seed"][str(seed)]["loss"],
                               alone["eval"]["loss"], rtol=1e-5)
    _, _, state_k = train.load_run(str(tmp_path / "k3"))
    _, _, state_1 = train.load_run(str(tmp_path / f"s{seed}"))
    for x, y in zip(jax.tree.leaves(state_k.params), jax.tree.leaves(state_1.params)):
      np.testing.assert_allclose(np.asarray(x)[k], np.asarray(y)[0], rtol=1e-4, atol=1e-6)
  # The summary's `eval` is the mean over seeds.
  np.testing.assert_allclose(
      together["eval"]["accuracy"],
      np.mean([together["eval_by_seed"][str(s)]["accuracy"] for s in (4, 5, 6)]))


def test_nan_stops_with_step_and_last_good_checkpoint(tmp_path, tiny_config):
  config = tiny_config()
  config.optimizer.name = "sgd"
  config.optimizer.grad_clip_norm = 0.0
  config.optimizer.learning_rate = 1e38  # Overflows float32 weights within a few steps.
  config.num_train_steps = 12
  with pytest.raises(train.NonFiniteLossError, match=r"NaN/Inf at step \d+;") as err:
    train.train_and_evaluate(config, str(tmp_path))
  bad_step = int(str(err.value).split("at step ")[1].split(";")[0])
  assert 1 <= bad_step <= 12
  # Whatever was checkpointed before the blow-up is finite and named in the message.
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  if steps:
    assert f"checkpoint is step {steps[-1]}" in str(err.value)
    assert steps[-1] < bad_step
    assert all(np.isfinite(x).all() for x in _params(str(tmp_path)))
  else:
    assert "no checkpoint was saved" in str(err.value)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start(workdir, *extra):
  """Starts a 600-step run in a subprocess; its output goes to `<workdir>.log`.

  (A file, not a pipe: a pipe nobody drains fills up and blocks the child.)
  """
  args = ["--config=configs/copy.py:lstm,tiny", f"--workdir={workdir}",
          "--config.progress_bar=false", "--config.num_train_steps=600",
          "--config.checkpoint_every_steps=25", "--config.log_every_steps=1",
          "--config.eval_every_steps=100", *extra]
  log = open(f"{workdir}.log", "w")
  command = [sys.executable, os.path.join(ROOT, "scripts", "train.py"), *args]
  return subprocess.Popen(command, cwd=ROOT,
                          stdout=log, stderr=subprocess.STDOUT, text=True)


def _output(workdir) -> str:
  return open(f"{workdir}.log").read()


def _wait_for_step(workdir, step, proc, timeout=120.0):
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, _output(workdir)
    lines = metric_writer.read_metrics(str(workdir)) if os.path.exists(workdir) else []
    if any(m["step"] >= step for m in lines[-3:]):
      return
    time.sleep(0.01)
  raise TimeoutError(f"run did not reach step {step}")


@pytest.mark.slow  # several end-to-end training runs
def test_sigkill_and_resume_is_bit_identical(tmp_path):
  reference, killed = tmp_path / "reference", tmp_path / "killed"
  proc = _start(reference)
  assert proc.wait(timeout=300) == 0, _output(reference)

  proc = _start(killed)
  _wait_for_step(killed, 60, proc)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait(timeout=60) == -signal.SIGKILL
  assert not os.path.exists(killed / "summary.json")  # It really died mid-run.
  proc = _start(killed)
  assert proc.wait(timeout=300) == 0, _output(killed)
  assert "Resuming" in _output(killed)

  assert _deterministic_lines(str(killed)) == _deterministic_lines(str(reference))
  for a, b in zip(_params(str(killed)), _params(str(reference)), strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # several end-to-end training runs
def test_sigterm_saves_a_checkpoint_then_exits(tmp_path):
  workdir = tmp_path / "run"
  proc = _start(workdir)
  _wait_for_step(workdir, 40, proc)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=60) == 143, _output(workdir)
  out = _output(workdir)
  assert "Preempted at step" in out
  stopped_at = int(out.split("Preempted at step ")[1].split(";")[0])
  steps = sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())
  assert steps[-1] == stopped_at  # The checkpoint is at the step it stopped, not the last 25.
  assert 40 <= stopped_at < 600
  assert not os.path.exists(workdir / "summary.json")


def test_help_shows_the_config_argument_forms_and_every_model():
  out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--help"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode in (0, 1), out.stderr  # absl's --help exits 1 after printing
  assert "FILE[:MODEL[,option=value...][,tiny]" in out.stdout
  for name in models.MODEL_NAMES:
    assert name in out.stdout


@pytest.mark.slow  # several end-to-end training runs
def test_summary_states_the_chance_level(tmp_path, tiny_config):
  summary = train.train_and_evaluate(tiny_config("configs/agreement.py", "gru,tiny"),
                                     str(tmp_path))
  assert summary["chance_accuracy"] == 0.5
  assert "chance accuracy 0.5000" in train.format_summary(summary)


def test_one_diverged_seed_is_recorded_and_the_others_go_on(tmp_path, capsys):
  """Stopping a multi-seed run for one diverged seed lost every other seed's result."""
  state = steps.TrainState(step=np.array([8, 8]), params={}, opt_state={}, sums=None,
                           first_nonfinite_step=np.array([-1, 5]))

  class Checkpoints:
    directory = str(tmp_path)

    def wait(self):
      pass

    def latest_step(self):
      return 4

  announced = set()
  train._check_finite(state, Checkpoints(), seeds=(3, 4), announced=announced)
  assert announced == {4} and "seed 4 became NaN/Inf at step 5" in capsys.readouterr().err
  train._check_finite(state, Checkpoints(), (1.0, float("nan")), seeds=(3, 4),
                      announced=announced)
  assert capsys.readouterr().err == ""  # said once
  # Every seed diverged: the run stops, naming the step and the last good checkpoint.
  with pytest.raises(train.NonFiniteLossError, match=r"at step 5 in every seed; the last good "
                                                     r"checkpoint is step 4"):
    train._check_finite(state, Checkpoints(), (float("nan"), float("inf")), seeds=(3, 4),
                        announced=announced)
  # The diverged seed is null in what is written, and left out of the mean (never silently:
  # the summary lists it under nonfinite_seeds).
  per_seed = [{"loss": 0.5, "accuracy_by_distance": {"3": 0.25}},
              {"loss": float("nan"), "accuracy_by_distance": {"3": float("nan")}}]
  assert train.finite_or_none(per_seed[1]) == {"loss": None, "accuracy_by_distance": {"3": None}}
  assert train.mean_metrics(per_seed) == {"loss": 0.5, "accuracy_by_distance": {"3": 0.25}}
