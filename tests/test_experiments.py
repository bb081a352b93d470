"""The study's parts on tiny runs: configs/study.py, restoring and probing checkpoints, the
scripts' user errors, and each experiment's verdict logic on hand-made results.

The whole pipeline at the smoke scale (every experiment on real runs, REPORT.md) is the
slow-marked tests/test_report.py; here each piece is checked on its own, fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from types import MappingProxyType

import jax
import numpy as np
import pytest
from absl import flags
from flax import nnx

import experiments
from configs import copy as copy_config
from configs import study as study_config
from seqresearch import build
from seqresearch import cli
from seqresearch import evaluation
from seqresearch import models
from seqresearch import steps
from seqresearch import sweep
from seqresearch import train
from seqresearch.models import registry
from seqresearch.study import checkpoint_analysis, probes, restore, runner, variants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _study(scale: str, workdir) -> runner.Study:
  return runner.Study(scale, str(workdir), config=study_config, experiments=experiments.modules())


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
  """A 2-seed LSTM and a 1-seed Transformer, trained for a few steps on copy delays 3 .. 6."""
  root = tmp_path_factory.mktemp("tiny")
  out = {}
  for name, extra in (("lstm", {"num_seeds": 2}), ("transformer", {})):
    config = copy_config.get_config(f"{name},tiny")
    config.progress_bar = False
    for key, value in extra.items():
      config[key] = value
    train.train_and_evaluate(config, str(root / name))
    out[name] = str(root / name)
  return out


# ---------------------------------------------------------------- configs/study.py, variants


@pytest.mark.parametrize("scale", tuple(study_config.SCALES))
def test_every_study_sweep_builds_at_every_scale(tmp_path, scale):
  study = _study(scale, tmp_path)
  names = {s for m in study.experiments.values() for s in m.SWEEPS}
  for name in names:
    runs = study.runs(name)  # sweep.expand validates every member's config
    assert runs or (name, scale) == ("extrapolation", "smoke"), name
    for run in runs:
      assert variants.variant(study.variant(run)).model == run.model
  # Models with positions can be evaluated at every extrapolation distance.
  longest = max(study.settings.extrapolation.eval_distances)
  for run in study.runs("extrapolation"):
    if "max_len" in models.model_config(run.model):
      assert dict(run.overrides)["model.max_len"] >= longest


def test_a_model_added_to_the_table_joins_the_study_with_no_study_file_edited(monkeypatch):
  # A new row of the table (a copy of the GRU under another name and colour) ...
  new = dataclasses.replace(models.entry("gru"), label="GRU twin", color="tab:olive")
  monkeypatch.setattr(registry, "MODELS", MappingProxyType({**registry.MODELS, "gru2": new}))
  monkeypatch.setattr(registry, "MODEL_NAMES", tuple(registry.MODELS))
  # ... is trained by long_range at quick and full, timed by parallelism, counted by complexity.
  for scale in ("quick", "full"):
    assert "gru2" in study_config.study_models(scale)
    copy_members = study_config.get_sweep(f"sweep=long_range_copy,scale={scale}")
    assert any(m["model"] == "gru2" for m in copy_members)
  assert variants.variant("gru2").label == "GRU twin"
  assert variants.style("gru2")["color"] == "tab:olive"
  assert variants.variant("gru2").is_recurrent
  assert variants.sized_settings("gru2", 16, 64).hidden_size == 16
  # The smoke scale checks one model of each family (the table's first of each).
  families = {models.entry(n).family: n for n in reversed(models.names())}
  assert study_config.study_models("smoke") == tuple(
      n for n in models.names() if families[models.entry(n).family] == n)
  assert "gru2" not in study_config.study_models("smoke") and "rnn" in families.values()


def test_variants_derive_label_colour_and_kind_from_the_table():
  chrono = variants.variant("lstm_chrono")
  assert chrono.label == "LSTM (chrono init)" and chrono.color == models.entry("lstm").color
  assert chrono.is_recurrent and not variants.variant("transformer_nope").is_recurrent
  assert variants.style("lstm_chrono")["ls"] != variants.style("lstm")["ls"]
  assert variants.ordered(["transformer", "lstm_chrono", "rnn", "lstm"]) == \
      ["rnn", "lstm", "lstm_chrono", "transformer"]
  with pytest.raises(ValueError, match="variant 'lstmm'"):
    variants.variant("lstmm")


def test_study_config_rejects_unknown_sweep_and_scale(tmp_path):
  with pytest.raises(ValueError, match="sweep='nope'"):
    study_config.get_config("lstm,sweep=nope")
  with pytest.raises(ValueError, match="scale='huge'"):
    study_config.get_sweep("sweep=long_range_copy,scale=huge")
  with pytest.raises(ValueError, match="--scale='huge'"):
    _study("huge", tmp_path)


def test_study_config_reads_task_constants_from_the_task_configs():
  copy_length = copy_config.get_config().task.copy_length
  members = study_config.get_sweep("sweep=long_range_copy,scale=quick")
  chrono = [m for m in members if m.get("model.lstm_init") == "chrono"]
  assert chrono and all(m["model.chrono_max_len"] == m["task.max_delay"] + 2 * copy_length
                        for m in chrono)


# ---------------------------------------------------------------- restore and probes


def test_restore_evaluates_every_seed_with_its_own_parameters(tiny_runs):
  restored = restore.restore(tiny_runs["lstm"])
  assert restored.seeds == (0, 1) and restored.step == 6
  low, high = restored.settings.task.trained_distances
  assert (low, high) == (13, 16)
  evals = restore.evaluate_at_distances(restored, [high, 4 * high], batch_size=8, num_batches=2)
  assert sorted(evals) == [high, 4 * high]
  for distance, per_seed in evals.items():
    assert len(per_seed) == 2 and per_seed[0]["examples"] == 16
    assert list(per_seed[0]["accuracy_by_distance"]) == [str(distance)]
  # The vmapped program gives seed s exactly what seed s's own model scores on the same batches.
  batches = restore.probe_batches(restore.task_at(restored, 4 * high), 8, 2)
  for s in range(2):
    correct = scored = 0.0
    for i in range(2):
      batch = jax.tree.map(lambda x: x[i], batches)
      _, hit_BxT, n = evaluation.loss_and_correct(restored.model(s)(batch.inputs), batch)
      correct, scored = correct + float(hit_BxT.sum()), scored + float(n)
    assert evals[4 * high][s]["accuracy"] == pytest.approx(correct / scored, abs=1e-6)


def test_initial_model_is_the_runs_own_initialisation(tiny_runs):
  restored = restore.restore(tiny_runs["lstm"])
  config = restored.config
  tx = build.make_optimizer(config.optimizer, config.num_train_steps)
  keys = steps.seed_keys(config.seed, config.num_seeds)
  _, _, state = steps.init_state(restored.settings.model, restored.settings.vocab_size, tx,
                                 keys["init"])
  for s in range(2):
    _, params, _ = nnx.split(restored.initial_model(s), nnx.Param, ...)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state.params)):
      np.testing.assert_array_equal(a, b[s])
  trained = jax.tree.leaves(nnx.split(restored.model(0), nnx.Param, ...)[1])
  initial = jax.tree.leaves(nnx.split(restored.initial_model(0), nnx.Param, ...)[1])
  assert any(not np.array_equal(a, b) for a, b in zip(trained, initial))


def test_unreachable_distances_say_why(tiny_runs):
  lstm = restore.restore(tiny_runs["lstm"])
  assert "must be integers > L = 10" in restore.unreachable(lstm, 10)
  transformer = restore.restore(tiny_runs["transformer"])
  assert restore.unreachable(transformer, 100) is None
  assert "model.max_len is 512" in restore.unreachable(transformer, 600)
  with pytest.raises(ValueError, match="model.max_len"):
    restore.evaluate_at_distances(transformer, [600])
  with pytest.raises(FileNotFoundError, match="no config.json"):
    restore.restore(os.path.join(tiny_runs["lstm"], "nope"))


def test_gradient_profile_at_init_and_trained(tiny_runs):
  restored = restore.restore(tiny_runs["lstm"])
  trained = probes.gradient_profile(restored, 16, num_examples=4)
  initial = probes.gradient_profile(restored, 16, num_examples=4, at_init=True)
  for profile in (trained, initial):
    assert profile["lags"] == list(range(17))  # the first recall sits at t = 16
    norms_SxK = np.asarray(profile["norms_by_seed"])
    assert norms_SxK.shape == (2, 17) and np.isfinite(norms_SxK).all()
    assert len(profile["decay_rate_by_seed"]) == 2
    np.testing.assert_allclose(profile["log10_source_norm_by_seed"],
                               np.log10(norms_SxK[:, 16]), rtol=1e-9)
  assert trained["norms_by_seed"] != initial["norms_by_seed"]


def test_gradient_ratio_is_normalised_by_neutral_lags_not_the_delimiter():
  # Query at t = 12, source 10 steps back; lag 1 (the delimiter) draws 30x a blank's gradient.
  norm_BxT = np.ones((2, 13))
  norm_BxT[:, 11] = 30.0  # lag 1
  norm_BxT[:, 2] = 0.5  # the source, lag 10
  norm_BxT[:, 5] = 7.0  # one outlier among the intermediate lags
  source, neutral = probes.source_and_neutral_norms(norm_BxT, np.array([12, 12]), 10)
  assert source == 0.5 and neutral == 1.0  # the median over lags 2 .. 9, not lag 1's 30
  assert probes.source_and_neutral_norms(norm_BxT, np.array([12, 12]), 2)[1] != \
      probes.source_and_neutral_norms(norm_BxT, np.array([12, 12]), 2)[1]  # NaN: no lag between


def test_attention_mass_covers_every_seed(tiny_runs):
  transformer = restore.restore(tiny_runs["transformer"])
  assert probes.has_attention(transformer)
  assert not probes.has_attention(restore.restore(tiny_runs["lstm"]))
  mass = probes.attention_mass_by_distance(transformer, [16], num_examples=4)
  assert mass["seeds"] == [0]
  assert sorted(mass["heads"]) == ["L0H0", "L0H1"] and len(mass["heads"]["L0H0"]["16"]) == 1


# ---------------------------------------------------------------- scripts/analyze.py


def _strict_json(path) -> dict:
  def refuse(constant):
    raise ValueError(f"not strict JSON: {constant}")
  return json.loads(open(path).read(), parse_constant=refuse)


def test_analyze_script_writes_strict_json_and_figures_and_skips_what_it_cannot_reach(
    tiny_runs, tmp_path, capsys):
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
  assert "± nan" not in capsys.readouterr().out  # one seed: no interval, and it says so
  analysis = _strict_json(out / checkpoint_analysis.ANALYSIS_FILE)
  assert sorted(analysis["accuracy_by_distance"], key=int) == ["16", "64"]
  one_seed = analysis["accuracy_by_distance"]["16"]  # one seed: the binomial interval only
  assert one_seed["ci95_seeds"] is None and one_seed["ci95"] == one_seed["ci95_binomial"] > 0
  assert one_seed["examples_per_seed"] == analysis["examples_by_distance"]["16"]
  assert "model.max_len" in analysis["skipped"]["600"]
  assert analysis["trained_distances"] == [13, 16] and analysis["seeds"] == [0]
  assert set(analysis["gradient"]) == {"init", "trained"}
  heads = analysis["attention"]["heads"]
  assert sorted(heads) == ["L0H0", "L0H1"] and sorted(heads["L0H0"], key=int) == ["16", "64"]
  for name in analysis["figures"]:
    assert (out / name).stat().st_size > 0
  assert "attention_L0H1.png" in analysis["figures"]
  # User errors: one line, exit status 2.
  for args, message in (([f"--workdir={tmp_path}/none"], "no config.json"),
                        ([f"--workdir={tiny_runs['lstm']}", "--distances=2x"], "not an integer"),
                        ([f"--workdir={tiny_runs['lstm']}", "--gradient_distance=5"],
                         "must be integers > L")):
    flags.FLAGS([sys.argv[0], *args])
    try:
      assert script.main([sys.argv[0]]) == 2
    finally:
      flags.FLAGS.unparse_flags()
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
  with pytest.raises(SystemExit) as exit_info:
    cli.parse_flags([sys.argv[0], "--workdir=x", "--step=abc"])
  assert exit_info.value.code == 2


def test_report_script_user_errors_are_one_line_and_exit_2(tmp_path):
  script = os.path.join(ROOT, "scripts", "report.py")
  for flag, message in (("--experiments=nope", "unknown ['nope']"),
                        ("--scale=huge", "--scale='huge'"),
                        ("--parallel=0", "--parallel=0")):
    result = subprocess.run([sys.executable, script, flag, f"--workdir={tmp_path}"],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_essay_sides_come_from_the_family_not_the_carry():
  # The causal CNN carries a buffer for chunked evaluation (settings.is_recurrent), but it is
  # Table 1's convolution row: the verdicts must not count it as a recurrent model.
  from seqresearch.study import variants  # pylint: disable=g-import-not-at-top
  side = {n: (variants.variant(n).is_recurrent, variants.variant(n).is_attention)
          for n in ("rnn", "lstm", "lru", "s6", "conv", "transformer", "local_attention")}
  assert side == {"rnn": (True, False), "lstm": (True, False), "lru": (True, False),
                  "s6": (True, False), "conv": (False, False), "transformer": (False, True),
                  "local_attention": (False, True)}


def test_one_seed_or_a_perfect_score_does_not_decide_a_comparison():
  # A single seed at accuracy 1.0 had a binomial interval of exactly 0 and was called 'higher'
  # than 0.97: one seed decided a verdict.
  from seqresearch.study import stats  # pylint: disable=g-import-not-at-top
  one = stats.seed_summary([1.0], examples=512)
  assert one["ci95"] > 0  # Wilson: no certainty from 512 examples
  assert stats.compare(one, stats.seed_summary([0.97], examples=512)) == "undecided"
  perfect = stats.seed_summary([1.0, 1.0, 1.0], examples=512)
  assert perfect["ci95_binomial"] > 0
  assert stats.compare(perfect, stats.seed_summary([0.2, 0.25, 0.22], examples=512)) == "higher"


def test_study_budgets_follow_the_family():
  # The causal CNN has a carry (settings.is_recurrent) but trains in parallel over time:
  # it gets the parallel budget, the linear recurrences the recurrent one.
  from configs import study  # pylint: disable=g-import-not-at-top
  steps = {m: study.get_config(f"{m},sweep=long_range_copy,scale=quick").num_train_steps
           for m in ("conv", "lstm", "lru", "transformer")}
  assert steps["conv"] == steps["transformer"] != steps["lstm"] == steps["lru"]
