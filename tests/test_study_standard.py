"""The `standard` scale's members (seeds, distances, the learning-rate sweep) and the tuning
machinery: the pilot, the choice, the chosen rates reaching every other sweep, the order in
which the study trains them and resumes. No study run here: trainers are replaced by a fake
that writes each run's config.json and summary.json.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

import experiments
from configs import study as study_config
from seqresearch import build
from seqresearch import models
from seqresearch import sweep
from seqresearch import sweep_launch
from seqresearch import workdir as workdir_lib
from seqresearch.study import runner, stats, tuning, variants

STANDARD = study_config.SCALES["standard"]


def _study(tmp_path, scale: str = "standard", names=None) -> runner.Study:
  return runner.Study(scale, str(tmp_path), config=study_config,
                      experiments=experiments.modules(names or experiments.NAMES))


def _rates_file(tmp_path, rates: dict[str, float]) -> str:
  path = str(tmp_path / "rates.json")
  workdir_lib.write_json(path, {"rates": rates})
  return path


# ---------------------------------------------------------------- the standard scale's members


def test_standard_scale_has_five_seeds_and_enough_evaluation_examples_per_cell():
  train = STANDARD["train"]
  assert train["num_seeds"] >= 5
  examples = train["eval_batch_size"] * train["num_eval_batches"]
  low, high = STANDARD["long_range"]["agreement_distances"]
  per_distance = examples / (high - low + 1)
  for lo, hi in stats.distance_bins(low, high, STANDARD["long_range"]["agreement_bin_width"]):
    assert per_distance * (hi - lo + 1) >= stats.MIN_EXAMPLES, (lo, hi)
  lo_l, hi_l = STANDARD["capacity"]["long_copy"]["lengths"]
  per_length = examples / (hi_l - lo_l + 1)
  for lo, hi in stats.distance_bins(lo_l, hi_l, STANDARD["capacity"]["long_copy"]["bin_width"]):
    assert per_length * (hi - lo + 1) >= stats.MIN_EXAMPLES, (lo, hi)
  # Every member of every sweep evaluates that many examples per seed, over five seeds.
  config = study_config.get_config("lstm,sweep=long_range_agreement,scale=standard")
  assert config.num_seeds >= 5 and config.eval_batch_size * config.num_eval_batches == examples


def test_standard_agreement_reaches_distance_100_with_the_chrono_lstm(tmp_path):
  rates = {n: 1e-3 for n in (*study_config.study_models("standard"), "lstm_chrono")}
  members = study_config.get_sweep(
      f"sweep=long_range_agreement,scale=standard,learning_rates={_rates_file(tmp_path, rates)}")
  assert {runner.variant_of(m["model"], m) for m in members} == \
      set(study_config.study_models("standard")) | {"lstm_chrono"}
  assert {m["task.max_distance"] for m in members} == {100}
  (chrono,) = [m for m in members if m.get("model.lstm_init") == "chrono"]
  config = study_config.get_config("lstm,sweep=long_range_agreement,scale=standard")
  for key, value in chrono.items():
    if key != "model":
      sweep.apply_value(config, key, value)
  # Chrono's T_max is the longest dependency: the whole sequence at distance 100.
  assert chrono["model.chrono_max_len"] == build.validate_run(config).seq_len >= 100
  # The reported cells reach 50 and 100: 41-50 and 91-100 among them.
  bins = stats.distance_bins(11, 100, STANDARD["long_range"]["agreement_bin_width"])
  assert (41, 50) in bins and bins[-1] == (91, 100)
  # The copy task reaches distance 100 as well (distance = delay + 10).
  copy_length = study_config.TASK_CONFIGS["copy"].get_config().task.copy_length
  assert max(STANDARD["long_range"]["copy_delays"]) + copy_length >= 100


def test_standard_learning_rate_sweep_is_every_variant_at_every_rate_on_one_pilot():
  members = study_config.get_sweep("sweep=learning_rate,scale=standard")
  rates = STANDARD["learning_rate"]["rates"]
  assert sorted(rates) == [3e-4, 1e-3, 3e-3]
  expected = set(study_config.study_models("standard")) | {"lstm_chrono"}
  by_variant: dict[str, list[float]] = {}
  for m in members:
    by_variant.setdefault(runner.variant_of(m["model"], m), []).append(
        m["optimizer.learning_rate"])
  assert set(by_variant) == expected
  assert all(sorted(r) == sorted(rates) for r in by_variant.values())
  # One pilot task: every member has the same task fields; one budget per family.
  tasks = {tuple(sorted((k, v) for k, v in m.items() if k.startswith("task."))) for m in members}
  assert len(tasks) == 1
  steps = {}
  for m in members:
    config = study_config.get_config(f"{m['model']},sweep=learning_rate,scale=standard")
    steps.setdefault(models.entry(m["model"]).family, set()).add(config.num_train_steps)
    assert config.task.name == STANDARD["learning_rate"]["task"]
  assert all(len(s) == 1 for s in steps.values())
  assert steps["recurrent"] == {STANDARD["train"]["recurrent_steps"]["agreement"]}


def test_a_killed_standard_run_resumes_from_a_checkpoint_that_changes_no_run_identity():
  config = study_config.get_config("lstm,sweep=long_range_agreement,scale=standard")
  assert 0 < config.checkpoint_every_steps < config.num_train_steps
  resolved = json.loads(config.to_json_best_effort())
  at_end = dict(resolved, checkpoint_every_steps=config.num_train_steps)
  assert sweep.config_hash(resolved) == sweep.config_hash(at_end)


# ---------------------------------------------------------------- choosing the rate


def test_the_rate_with_the_lowest_mean_loss_wins_and_a_diverged_seed_loses():
  assert tuning.choose({3e-4: [0.5, 0.5], 1e-3: [0.1, 0.2], 3e-3: [0.05, 0.1]}) == 3e-3
  # One seed of 3e-3 diverged (None) or stayed at chance: the robust rate wins.
  assert tuning.choose({1e-3: [0.1, 0.1, 0.1], 3e-3: [0.01, 0.01, None]}) == 1e-3
  assert tuning.choose({1e-3: [0.1, 0.1, 0.1], 3e-3: [0.01, 0.01, 0.69]}) == 1e-3
  assert tuning.choose({3e-3: [0.2], 1e-3: [0.2]}) == 1e-3  # a tie: the smaller rate
  assert tuning.score([float("nan"), 0.1]) == math.inf
  with pytest.raises(ValueError, match="no pilot run finished"):
    tuning.choose({})


def test_a_tuned_scale_refuses_sweeps_without_chosen_rates(tmp_path):
  with pytest.raises(ValueError, match="learning_rates=PATH"):
    study_config.get_sweep("sweep=long_range_copy,scale=standard")
  with pytest.raises(ValueError, match="trains at the table's rates"):
    study_config.get_sweep(f"sweep=long_range_copy,scale=quick,learning_rates="
                           f"{_rates_file(tmp_path, {'lstm': 1e-3})}")
  with pytest.raises(ValueError, match="no rate for 'rnn'"):
    study_config.get_sweep(f"sweep=long_range_copy,scale=standard,learning_rates="
                           f"{_rates_file(tmp_path, {'lstm': 1e-3})}")
  with pytest.raises(ValueError, match="no such file"):
    study_config.get_sweep("sweep=long_range_copy,scale=standard,learning_rates=/nonexistent")
  # A variant missing from the file takes its model's rate.
  rates = dict.fromkeys(study_config.study_models("standard"), 3e-4) | {"lstm": 3e-3}
  members = study_config.get_sweep(
      f"sweep=long_range_copy,scale=standard,learning_rates={_rates_file(tmp_path, rates)}")
  chrono = [m for m in members if m.get("model.lstm_init") == "chrono"]
  assert chrono and all(m["optimizer.learning_rate"] == 3e-3 for m in chrono)
  study = _study(tmp_path / "study", names=("long_range",))
  with pytest.raises(ValueError, match="train that sweep first"):
    study.runs("long_range_copy")


def _pilot_loss(variant: str, rate: float) -> list[float | None]:
  """Constructed final losses: the LSTM has one seed stuck at chance at 3e-3 (the issue's
  case), the Transformer diverges at 3e-3, everyone else is best at 3e-3."""
  if variant == "lstm" and rate == 3e-3:
    return [0.01, 0.01, 0.69]
  if variant == "transformer" and rate == 3e-3:
    return [None, 0.01, 0.01]
  return [{3e-4: 0.4, 1e-3: 0.2, 3e-3: 0.1}[rate]] * 3


def _fake_trainer(trained: list[str]):
  """sweep_launch.run_local stand-in: writes each run's config.json and summary.json."""
  def run_local(runs, parallel):
    del parallel
    for run in runs:
      os.makedirs(run.workdir, exist_ok=True)
      with open(os.path.join(run.workdir, "config.json"), "w") as f:
        json.dump(run.config, f)
      rate = run.config["optimizer"]["learning_rate"]
      variant = runner.variant_of(run.model, dict(run.overrides))
      losses = _pilot_loss(variant, rate)
      evals = {str(s): {"loss": loss, "accuracy": 0.5 if loss is None else 1.0 - loss}
               for s, loss in enumerate(losses[:run.config["num_seeds"]])}
      with open(os.path.join(run.workdir, "summary.json"), "w") as f:
        json.dump({"eval_by_seed": evals}, f)
      trained.append(run.name)
    return [{"name": r.name} for r in runs]
  return run_local


def test_the_study_trains_the_pilot_first_then_every_sweep_at_the_chosen_rates(
    tmp_path, monkeypatch):
  monkeypatch.setattr(sweep, "summarize", lambda runs, sweep_dir: [])  # fake summaries
  trained: list[str] = []
  monkeypatch.setattr(sweep_launch, "run_local", _fake_trainer(trained))
  study = _study(tmp_path, names=("learning_rate", "long_range"))
  study.train(["long_range_agreement"])
  pilot = study.runs(tuning.SWEEP)
  assert set(trained[:len(pilot)]) == {r.name for r in pilot}  # the pilot first
  chosen = workdir_lib.read_json(study.learning_rates_file)
  assert chosen["rates"]["lstm"] == 1e-3  # 3e-3 left one seed at chance
  assert chosen["rates"]["transformer"] == 1e-3  # 3e-3 diverged a seed
  assert chosen["rates"]["gru"] == 3e-3 and chosen["rates"]["lstm_chrono"] == 3e-3
  agreement = study.runs("long_range_agreement")
  assert len(trained) == len(pilot) + len(agreement)
  for run in agreement:
    assert run.finished
    assert run.config["optimizer"]["learning_rate"] == chosen["rates"][study.variant(run)]
  # Rerunning (a killed study restarted) trains nothing that finished.
  study.train(["long_range_agreement", tuning.SWEEP])
  assert len(trained) == len(pilot) + len(agreement)
  # The section: the sweep as a table, the choice, a figure, a verdict traced to its numbers.
  module = study.experiments["learning_rate"]
  results = stats.json_ready(module.run(study))
  assert results["tuned"] and results["rates_tried"] == [3e-4, 1e-3, 3e-3]
  lstm = results["variants"]["lstm"]
  assert lstm["chosen"] == 1e-3 and lstm["chosen_index"] == "1"
  assert lstm["by_rate"]["2"]["seeds_solved"] == 2  # 0.99, 0.99 and 0.31
  assert stats.split(lstm["by_rate"]["2"]["accuracy"], module.SOLVED)
  table = module.tables(results)
  assert "| lr = 0.0003 | lr = 0.001 | lr = 0.003 |" in table and "seeds 0.99 0.99 0.31" in table
  verdict = module.verdict(results)
  assert "LSTM 0.001" in verdict.text and "edge of the grid" in verdict.text
  for c in verdict.cited:
    assert c["text"] in verdict.text
  paths = module.figures(results, str(tmp_path / "figures"))
  assert len(paths) == 1 and os.path.getsize(paths[0]) > 1000


def test_an_untuned_scale_says_its_models_train_at_their_table_rates(tmp_path):
  study = _study(tmp_path, "quick", names=("learning_rate",))
  assert not study.tunes and study.train([]) == []
  module = study.experiments["learning_rate"]
  results = module.run(study)
  assert results["rates"]["lstm"] == models.entry("lstm").learning_rate
  # Every model the scale trains: its compared models and its anchors' own (quick: S6, LRU).
  trained = {*study_config.study_models("quick"),
             *(n for names in study_config.anchor_models("quick").values() for n in names)}
  assert set(results["rates"]) == trained and {"s6", "lru"} <= trained
  assert results["rates"]["s6"] == models.entry("s6").learning_rate
  verdict = module.verdict(results)
  assert "table learning rate" in verdict.text and verdict.cited
  assert variants.variant("lstm").label in module.tables(results)


# ---------------------------------------------------------------- beyond the grid's edge


def test_beyond_edge_continues_the_grid_one_step_on_the_chosen_side():
  grid = {"0.0003": 0.5, "0.001": 0.4, "0.003": 0.3}
  scores = {"top": grid, "bottom": grid, "inside": grid, "one": {"0.001": 0.1}}
  chosen = {"top": 3e-3, "bottom": 3e-4, "inside": 1e-3, "one": 1e-3}
  # Step sqrt(10) on the 1-3-10 ladder: 3e-3 -> 1e-2, 3e-4 -> 1e-4; inside or a single rate:
  # nothing to extend.
  assert tuning.beyond_edge(scores, chosen) == {"top": 1e-2, "bottom": 1e-4}
  doubling = {"0.001": 1.0, "0.002": 0.5, "0.004": 0.2}
  assert tuning.beyond_edge({"v": doubling}, {"v": 4e-3}) == {"v": 1e-2}  # 8e-3 -> 1e-2
  assert tuning.beyond_edge({"v": doubling}, {"v": 1e-3}) == {"v": 3e-4}  # 5e-4 -> 3e-4


EDGE_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "scripts", "learning_rate_edge.py")


def _summary(path: str, losses: list[float | None]) -> None:
  os.makedirs(path, exist_ok=True)
  workdir_lib.write_json(os.path.join(path, workdir_lib.SUMMARY_FILE), {
      "eval_by_seed": {str(i): (None if x is None else {"loss": x, "accuracy": 0.9})
                       for i, x in enumerate(losses)}})


def test_learning_rate_edge_scores_the_rate_beyond_and_says_whether_it_would_be_chosen(
    tmp_path):
  study = _study(tmp_path, names=("learning_rate",))
  runs = {study.variant(r): r for r in study.runs(tuning.SWEEP)
          if dict(r.overrides)["optimizer.learning_rate"] == 3e-3}
  # The GRU chose the top rate and does better beyond it; the Transformer chose it and one
  # seed diverges beyond it; the LSTM chose 1e-3 (inside the grid): not trained again.
  # Local attention's pilot run never finished: nothing to compare, so it is left out.
  rates = {"gru": 3e-3, "transformer": 3e-3, "lstm": 1e-3, "local_attention": 3e-3}
  grid = {"0.0003": 0.6, "0.001": 0.5, "0.003": 0.4}
  workdir_lib.write_json(tuning.path(str(tmp_path)), {
      "criterion": tuning.CRITERION, "rates": rates, "scores": dict.fromkeys(rates, grid)})
  for name, losses in (("gru", [0.4, 0.4]), ("transformer", [0.1, 0.1])):
    _summary(runs[name].workdir, losses)
    workdir_lib.write_json(os.path.join(runs[name].workdir, workdir_lib.CONFIG_FILE),
                           runs[name].config)
  edge = tmp_path / "runs" / "learning_rate_edge"
  _summary(str(edge / "gru-lr0.01"), [0.2, 0.3])  # finished: reused, not trained here
  _summary(str(edge / "transformer-lr0.01"), [0.05, None])
  result = subprocess.run([sys.executable, EDGE_SCRIPT, f"--workdir={tmp_path}"],
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "gru: score 0.4 at 0.003, 0.25 at 0.01: the wider grid would choose it" in result.stdout
  assert "transformer: score 0.1 at 0.003, inf at 0.01: the chosen rate stands" in result.stdout
  out = workdir_lib.read_json(str(tmp_path / "learning_rate_edge.json"))
  assert set(out["variants"]) == {"gru", "transformer"}
  assert out["variants"]["gru"]["moves"] and not out["variants"]["transformer"]["moves"]
  assert out["variants"]["transformer"]["score_beyond"] is None  # inf: strict JSON


def test_learning_rate_edge_without_chosen_rates_is_one_line_and_exit_status_2(tmp_path):
  result = subprocess.run([sys.executable, EDGE_SCRIPT, f"--workdir={tmp_path}"],
                          capture_output=True, text=True)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines() == [
      f"error: --workdir={tmp_path}: no chosen learning rates ({tuning.FILE}) of a scale that "
      f"tunes; run its '{tuning.SWEEP}' piece first."]
  result = subprocess.run([sys.executable, EDGE_SCRIPT, f"--workdir={tmp_path}", "--scale=quick",
                           "--skip=s7"], capture_output=True, text=True)
  assert result.returncode == 2 and result.stderr.strip().splitlines() == [
      "error: --scale=quick: does not tune (its learning_rate.rates holds fewer than two "
      "rates): no grid has an edge."]
