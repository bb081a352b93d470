"""The study's parts on tiny runs: configs/study.py, checkpoint analysis, each experiment's logic.

The whole pipeline at the smoke scale (every experiment on real runs, REPORT.md) is
tests/test_report.py; here each piece is checked on its own, fast.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np
import pytest
from absl import flags
from flax import nnx

from conftest import ROOT
from seqresearch import analyze
from seqresearch import build
from seqresearch import evaluation
from seqresearch import report
from seqresearch import steps
from seqresearch import sweep
from seqresearch import train


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
  """A 2-seed LSTM and a 1-seed Transformer, trained for a few steps on copy delays 3 .. 6."""
  module = sweep.load_config_module(os.path.join(ROOT, "configs", "copy.py"))
  root = tmp_path_factory.mktemp("tiny")
  out = {}
  for name, extra in (("lstm", {"num_seeds": 2}), ("transformer", {})):
    config = module.get_config(f"{name},tiny")
    config.progress_bar = False
    for key, value in extra.items():
      config[key] = value
    train.train_and_evaluate(config, str(root / name))
    out[name] = str(root / name)
  return out


# ---------------------------------------------------------------- configs/study.py


@pytest.mark.parametrize("scale", report.SCALES)
def test_every_study_sweep_builds_at_every_scale(tmp_path, scale):
  study = report.Study(scale, str(tmp_path))
  names = {s for e in report.EXPERIMENTS for s in report.load_experiment(e).SWEEPS}
  for name in names:
    runs = study.runs(name)  # sweep.expand validates every member's config
    assert runs or (name, scale) == ("extrapolation", "smoke"), name
    for run in runs:
      assert study.variant(run) in study.variants
  # Transformers of the extrapolation sweep can be evaluated at every evaluation distance.
  longest = max(study.settings.extrapolation.eval_distances)
  for run in study.runs("extrapolation"):
    if study.variant(run).startswith("transformer"):
      assert dict(run.overrides)["model.max_len"] >= longest


def test_study_config_rejects_unknown_sweep_and_scale():
  module = sweep.load_config_module(report.STUDY_CONFIG)
  with pytest.raises(ValueError, match="sweep='nope'"):
    module.get_config("lstm,sweep=nope")
  with pytest.raises(ValueError, match="scale='huge'"):
    module.get_sweep("sweep=long_range_copy,scale=huge")


# ---------------------------------------------------------------- seqresearch.analyze


def test_restore_evaluates_every_seed_with_its_own_parameters(tiny_runs):
  restored = analyze.restore(tiny_runs["lstm"])
  assert restored.seeds == (0, 1) and restored.step == 6
  low, high = analyze.trained_distances(restored.settings.task)
  assert (low, high) == (13, 16)
  evals = analyze.evaluate_at_distances(restored, [high, 4 * high], batch_size=8, num_batches=2)
  assert sorted(evals) == [high, 4 * high]
  for distance, per_seed in evals.items():
    assert len(per_seed) == 2
    assert list(per_seed[0]["accuracy_by_distance"]) == [str(distance)]
  # The vmapped program gives seed k exactly what seed k's own model scores on the same batches.
  task = analyze.task_at_distance(restored.settings.task, 4 * high)
  batches = analyze.probe_batches(task, 8, 2)
  for k in range(2):
    correct = scored = 0.0
    for i in range(2):
      batch = jax.tree.map(lambda x: x[i], batches)
      _, hit_BxT, n = evaluation.loss_and_correct(restored.model(k)(batch.inputs), batch)
      correct, scored = correct + float(hit_BxT.sum()), scored + float(n)
    assert evals[4 * high][k]["accuracy"] == pytest.approx(correct / scored, abs=1e-6)


def test_initial_model_is_the_runs_own_initialisation(tiny_runs):
  restored = analyze.restore(tiny_runs["lstm"])
  config = restored.config
  tx = build.make_optimizer(config.optimizer, config.num_train_steps)
  keys = steps.seed_keys(config.seed, config.num_seeds)
  _, _, state = steps.init_state(restored.settings.model, restored.settings.vocab_size, tx,
                                 keys["init"])
  for k in range(2):
    _, params, _ = nnx.split(restored.initial_model(k), nnx.Param, ...)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state["params"])):
      np.testing.assert_array_equal(a, b[k])
  trained = jax.tree.leaves(nnx.split(restored.model(0), nnx.Param, ...)[1])
  initial = jax.tree.leaves(nnx.split(restored.initial_model(0), nnx.Param, ...)[1])
  assert any(not np.array_equal(a, b) for a, b in zip(trained, initial))


def test_unreachable_distances_say_why(tiny_runs):
  lstm = analyze.restore(tiny_runs["lstm"])
  assert "must be > L = 10" in analyze.unreachable(lstm, 10)
  transformer = analyze.restore(tiny_runs["transformer"])
  assert analyze.unreachable(transformer, 100) is None
  assert "model.max_len is 512" in analyze.unreachable(transformer, 600)
  with pytest.raises(ValueError, match="model.max_len"):
    analyze.evaluate_at_distances(transformer, [600])


def test_gradient_profile_at_init_and_trained(tiny_runs):
  restored = analyze.restore(tiny_runs["lstm"])
  trained = analyze.gradient_profile(restored, 16, num_examples=4)
  initial = analyze.gradient_profile(restored, 16, num_examples=4, at_init=True)
  for profile in (trained, initial):
    assert profile["lags"] == list(range(17))  # the first recall sits at t = 16
    norms_KxL = np.asarray(profile["norms_by_seed"])
    assert norms_KxL.shape == (2, 17) and np.isfinite(norms_KxL).all()
    assert len(profile["decay_rate_by_seed"]) == 2
    ratio = norms_KxL[:, 16] / norms_KxL[:, 1]
    np.testing.assert_allclose(profile["source_ratio_by_seed"], ratio, rtol=1e-12)
  assert trained["norms_by_seed"] != initial["norms_by_seed"]


def test_analyze_script_writes_json_and_figures_and_skips_what_it_cannot_reach(tiny_runs,
                                                                               tmp_path):
  # The script's main, in this process (absl flags parsed by hand): the compiled programs of
  # the tests above are reused.
  script = sweep.load_config_module(os.path.join(ROOT, "scripts", "analyze.py"))
  out = tmp_path / "analysis"
  flags.FLAGS([sys.argv[0], f"--workdir={tiny_runs['transformer']}", "--distances=16,64,600",
               "--num_examples=4", f"--out={out}"])
  try:
    assert script.main([sys.argv[0]]) == 0
  finally:
    flags.FLAGS.unparse_flags()
  analysis = json.loads((out / analyze.ANALYSIS_FILE).read_text())
  assert sorted(analysis["accuracy_by_distance"], key=int) == ["16", "64"]
  assert "model.max_len" in analysis["skipped"]["600"]
  assert analysis["trained_distances"] == [13, 16] and analysis["seeds"] == [0]
  assert set(analysis["gradient"]) == {"init", "trained"}
  heads = analysis["attention"]["heads"]
  assert sorted(heads) == ["L0H0", "L0H1"] and sorted(heads["L0H0"], key=int) == ["16", "64"]
  for name in analysis["figures"]:
    assert (out / name).stat().st_size > 0
  assert "attention_L0H1.png" in analysis["figures"]


# ---------------------------------------------------------------- verdicts and numbers


def test_lookup_fmt_and_compare():
  results = {"a": {"b": [1.0, {"c": -0.0001}]}}
  assert report.lookup(results, "a.b.1.c") == -0.0001
  with pytest.raises(KeyError, match="'x'"):
    report.lookup(results, "a.x")
  assert report.fmt(-0.0001) == "0.00" and report.fmt(float("nan")) == "n/a"
  high, low = {"mean": 0.9, "ci95": 0.05}, {"mean": 0.5, "ci95": 0.1}
  assert report.compare(high, low) == "higher" and report.compare(low, high) == "lower"
  assert report.compare(high, {"mean": 0.88, "ci95": 0.1}) == "indistinguishable"


def _stat(mean: float, ci95: float = 0.02) -> dict:
  return {"mean": mean, "ci95": ci95, "min": mean, "max": mean, "per_seed": [mean] * 3}


def _check_cited(verdict: report.Verdict, results: dict) -> None:
  assert verdict.cited
  for c in verdict.cited:
    assert report.lookup(results, c["path"]) == c["value"]
    assert report.fmt(c["value"], c["spec"]) == c["text"] and c["text"] in verdict.text


def test_long_range_verdict_names_results_against_the_essay():
  long_range = report.load_experiment("long_range")
  point = lambda acc: {"accuracy": _stat(acc), "sequence_accuracy": _stat(acc),  # noqa: E731
                       "loss": _stat(1.0), "baseline_loss": 0.5,
                       "loss_over_baseline": _stat(1.0 if acc < 0.2 else 0.1), "run": "r"}
  results = {
      "copy": {"chance": 0.125, "distances": [20, 110], "failed_runs": [], "variants": {
          "transformer": {"20": point(1.0), "110": point(0.99)},
          "lstm": {"20": point(0.9), "110": point(0.13)},
          "lstm_chrono": {"20": point(1.0), "110": point(0.98)}}},
      "agreement": {"chance": 0.5, "failed_runs": [], "variants": {
          "transformer": {"accuracy": _stat(0.8), "by_distance": {"10": _stat(0.8)},
                          "by_attractors": {"0": _stat(0.9), "3": _stat(0.6)}, "run": "r",
                          "seeds_solved": 0, "num_seeds": 3},
          "lstm": {"accuracy": _stat(0.9), "by_distance": {"10": _stat(0.9)},
                   "by_attractors": {"0": _stat(0.9), "3": _stat(0.85)}, "run": "r",
                   "seeds_solved": 3, "num_seeds": 3}}},
      "failed_runs": [],
  }
  verdict = long_range.verdict(results)
  _check_cited(verdict, results)
  text = " ".join(verdict.contradictions)
  assert "Chrono initialisation raises" in text and "from lower to indistinguishable" in text
  assert "Tran et al. (2018)" in text
  assert "As the essay predicts" not in verdict.text  # chrono LSTM ties the Transformer
  assert "remembers nothing" in verdict.text  # the forget-bias-1 LSTM at 110
  assert "3 of 3 (LSTM (forget bias 1))" in verdict.text


def test_extrapolation_verdict_flags_transformers_that_fail_beyond_training():
  extrapolation = report.load_experiment("extrapolation")
  by = lambda *accs: {d: {"accuracy": _stat(a), "sequence_accuracy": _stat(a)}  # noqa: E731
                      for d, a in zip(("10", "20", "80"), accs)}
  results = {"task": "agreement", "chance": 0.5, "train_distances": [10, 20],
             "eval_distances": [10, 20, 80], "failed_runs": [], "variants": {
                 "transformer": {"by_distance": by(1.0, 1.0, 0.55), "skipped": {}, "run": "a"},
                 "gru": {"by_distance": by(1.0, 0.99, 0.97), "skipped": {}, "run": "b"}}}
  verdict = extrapolation.verdict(results)
  _check_cited(verdict, results)
  assert len(verdict.contradictions) == 1 and "Delétang" in verdict.contradictions[0]
  assert "falls for the Transformer (1.00 → 0.55)" in verdict.text
  assert "worst seed drops below 0.9 for the Transformer (1.00 at distance 20, 0.55 at 80)" \
      in verdict.text


def test_complexity_counts_match_table_1_on_small_sizes(tmp_path):
  complexity = report.load_experiment("complexity")
  study = report.Study("smoke", str(tmp_path))
  results = complexity.run(study)
  assert results["by_n"]["lstm"]["exponent"] == pytest.approx(1.0, abs=1e-9)
  assert results["by_d"]["lstm"]["exponent"] == pytest.approx(2.0, abs=1e-9)
  assert results["by_n"]["attention_core"]["exponent"] == pytest.approx(2.0, abs=1e-9)
  assert results["by_d"]["attention_core"]["exponent"] == pytest.approx(1.0, abs=1e-9)
  assert all(results["by_n"][layer]["matmul_equals_analytic"] for layer in complexity.LAYERS)
  # Local exponents of the full attention layer rise towards 2 as n outgrows d.
  local = results["by_n"]["attention"]["local_exponents"]
  assert local == sorted(local) and 1.0 < local[0] < local[-1] < 2.0
  assert results["crossover"]["lstm"]["matmul"] == [17, 33]  # first n above (G - 2)·d
  assert results["depths"]["lstm"]["sequential"] == results["depth_lengths"]
  assert results["depths"]["attention"]["sequential"] == [1, 1, 1]
  table = complexity.table1(results)
  assert "O(n·d²)" in table and "O(n²·d)" in table
  verdict = complexity.verdict(results)
  _check_cited(verdict, results)
  assert not verdict.contradictions


def test_a_finished_run_with_other_settings_is_refused_not_reused(tmp_path):
  study = report.Study("smoke", str(tmp_path))
  run = study.runs("long_range_copy")[0]
  os.makedirs(run.workdir)
  path, arg = run.config_arg.split(":", 1)
  config = sweep.load_config_module(path).get_config(arg)
  for key, value in run.overrides:
    config.task[key.split(".")[1]] = value
  with open(os.path.join(run.workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort())
  with open(os.path.join(run.workdir, "summary.json"), "w") as f:
    f.write("{}")
  assert report.config_changes(run) == []
  config.num_train_steps += 1
  with open(os.path.join(run.workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort())
  with pytest.raises(ValueError, match=r"num_train_steps: 21 there, 20 now"):
    study.train(["long_range_copy"])
