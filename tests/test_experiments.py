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
from seqresearch.study import checkpoint_analysis, probes, restore, runner, stats, variants

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


def _sweep_arg(name: str, scale: str, tmp_path) -> str:
  """The sweep argument, naming a chosen-rates file (every table model at 1e-3) if it tunes."""
  arg = f"sweep={name},scale={scale}"
  if study_config.tunes(scale):
    rates = tmp_path / "chosen_rates.json"
    rates.write_text(json.dumps({"rates": dict.fromkeys(study_config.study_models(scale),
                                                        1e-3)}))
    arg += f",learning_rates={rates}"
  return arg


def _choose_rates_by_hand(study: runner.Study, rate: float = 1e-3) -> None:
  """What Study.train writes once the pilot has trained: here every pilot variant at `rate`."""
  from seqresearch import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from seqresearch.study import tuning  # pylint: disable=g-import-not-at-top
  pilot = {study.variant(run) for run in study.runs(tuning.SWEEP)}
  workdir_lib.write_json(study.learning_rates_file, {"rates": dict.fromkeys(pilot, rate)})


@pytest.mark.parametrize("scale", tuple(study_config.SCALES))
def test_every_study_sweep_builds_at_every_scale(tmp_path, scale):
  from seqresearch.study import tuning  # pylint: disable=g-import-not-at-top
  study = _study(scale, tmp_path)
  names = {s for m in study.experiments.values() for s in m.SWEEPS}
  if study.tunes:
    _choose_rates_by_hand(study, 1e-3)
  for name in names:
    runs = study.runs(name)  # sweep.expand validates every member's config
    assert runs or (name, scale) == ("extrapolation", "smoke") or \
        (name == tuning.SWEEP and not study.tunes), name
    for run in runs:
      assert variants.variant(study.variant(run)).model == run.model
      if study.tunes and name != tuning.SWEEP:  # every run at its variant's chosen rate
        assert run.config["optimizer"]["learning_rate"] == 1e-3, run.name
  # Models with positions can be evaluated at every extrapolation distance.
  longest = max(study.settings.extrapolation.eval_distances)
  for run in study.runs("extrapolation"):
    if "max_len" in models.model_config(run.model):
      assert dict(run.overrides)["model.max_len"] >= longest


def test_a_model_added_to_the_table_joins_the_study_with_no_study_file_edited(monkeypatch,
                                                                              tmp_path):
  # A new row of the table (a copy of the GRU under another name and colour) ...
  new = dataclasses.replace(models.entry("gru"), label="GRU twin", color="tab:olive")
  monkeypatch.setattr(registry, "MODELS", MappingProxyType({**registry.MODELS, "gru2": new}))
  monkeypatch.setattr(registry, "MODEL_NAMES", tuple(registry.MODELS))
  # ... is trained by long_range at standard and full, timed by parallelism, counted by
  # complexity (the quick scale names its models: it takes part there only when named).
  assert "gru2" not in study_config.study_models("quick")
  for scale in ("standard", "full"):
    assert "gru2" in study_config.study_models(scale)
    arg = f"sweep=long_range_copy,scale={scale}"
    if study_config.tunes(scale):  # its learning rate comes from the pilot, which has it too
      pilot = study_config.get_sweep(f"sweep=learning_rate,scale={scale}")
      assert any(m["model"] == "gru2" for m in pilot)
      rates = tmp_path / "rates.json"
      rates.write_text(json.dumps({"rates": dict.fromkeys(study_config.study_models(scale),
                                                          1e-3)}))
      arg += f",learning_rates={rates}"
    copy_members = study_config.get_sweep(arg)
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


def test_a_scale_may_name_its_models_in_table_order_and_a_wrong_name_is_one_line():
  assert variants.table_models(("transformer", "lstm")) == ("lstm", "transformer")
  with pytest.raises(ValueError, match=r"models=\('s4',\): \['s4'\] not in the table"):
    variants.table_models(("s4",))
  with pytest.raises(ValueError, match=r"models=\(\): empty"):
    variants.table_models(())
  with pytest.raises(ValueError, match="must be 'all', 'one_per_family' or a tuple"):
    variants.table_models("every")


def test_the_quick_scale_smokes_every_claim_with_a_few_models():
  """Quick (<= 20 min on 2 cores) keeps one contestant for each claim the report tests."""
  quick = study_config.SCALES["quick"]
  table = study_config.study_models("quick")
  # The essay's two sides and every family of the table (Table 1's rows).
  assert {"lstm", "transformer"} <= set(table)
  assert {models.entry(n).family for n in table} == {
      models.entry(n).family for n in models.names()}
  assert len(table) < len(models.names())  # a subset: the full table is standard's
  # Copy within and beyond local attention's reach (layers x (window - 1)), and a distance
  # the long-range verdict reads (>= 50).
  copy_length = copy_config.get_config().task.copy_length
  distances = [d + copy_length for d in quick["long_range"]["copy_delays"]]
  local = models.model_config("local_attention")
  reach = quick["train"]["sizes"]["attention"]["num_layers"] * (local.window - 1)
  assert min(distances) <= reach < max(distances) and max(distances) >= 50
  # Anchors: a selective and a linear time-invariant layer, and a reference.
  roles = study_config.anchor_models("quick")
  assert all(roles[r] for r in study_config.ANCHOR_ROLES)
  # Capacity: a recurrence, a linear recurrence and attention (their growing state sizes:
  # test_capacity_sweep_runs_every_capacity_model_at_growing_states_and_one_length).
  chosen = study_config.capacity_models("quick")
  assert {variants.variant(n).family for n in chosen} >= {"recurrent", "linear_recurrence",
                                                          "attention"}
  assert len(quick["capacity"]["sizes"]["recurrent"]) >= 2
  # Its run count, as timed against its 20 minutes (README): a model or sweep added to the
  # quick scale shows up here first.
  runs = sum(len(study_config.get_sweep(f"sweep={s},scale=quick"))
             for s in study_config.SWEEPS)
  assert runs <= 43, runs


def test_the_study_starts_runs_by_trained_tokens_most_first(tmp_path):
  ranked = sorted((r for name in study_config.SWEEPS for r in _study("quick", tmp_path).runs(name)),
                  key=runner._cost_rank, reverse=True)
  first = ranked[0]
  assert first.model in ("conv", "transformer", "local_attention")
  assert dict(first.overrides)["task.max_delay"] == max(
      study_config.SCALES["quick"]["long_range"]["copy_delays"])
  # The anchors' S6 (400 steps at length 40) before every short MQAR run: ranked by a distance
  # field it does not have, it once started last and ran alone.
  s6 = next(i for i, r in enumerate(ranked) if r.model == "s6")
  assert s6 < min(i for i, r in enumerate(ranked) if "task.num_pairs" in dict(r.overrides))
  assert runner._cost_rank(dataclasses.replace(first, config={})) == 0  # no config: last


def test_every_quick_cell_has_500_evaluation_examples_with_fewer_batches_per_task():
  quick = study_config.SCALES["quick"]
  size = quick["train"]["eval_batch_size"]

  def examples(model, sweep):
    config = study_config.get_config(f"{model},sweep={sweep},scale=quick")
    assert config.eval_batch_size == size
    return config.eval_batch_size * config.num_eval_batches

  # Copy and MQAR: one distance or K per run; agreement: per distance (bins of one);
  # long copy: per bin of lengths.
  assert examples("lstm", "long_range_copy") >= stats.MIN_EXAMPLES
  assert examples("transformer", "capacity") >= stats.MIN_EXAMPLES
  low, high = quick["long_range"]["agreement_distances"]
  assert examples("lstm", "long_range_agreement") / (high - low + 1) >= stats.MIN_EXAMPLES
  lo, hi = quick["capacity"]["long_copy"]["lengths"]
  per_length = examples("mingru", "capacity_copy") / (hi - lo + 1)
  for a, b in stats.distance_bins(lo, hi, quick["capacity"]["long_copy"]["bin_width"]):
    assert per_length * (b - a + 1) >= stats.MIN_EXAMPLES, (a, b)
  # Fewer batches where one cell is scored: copy evaluates 11 times fewer than agreement.
  assert examples("lstm", "long_range_copy") < examples("lstm", "long_range_agreement")


def test_per_task_evaluation_batches_name_a_missing_task_and_capacity_models_are_checked(
    monkeypatch):
  train = dict(study_config.SCALES["quick"]["train"])
  monkeypatch.setitem(study_config.SCALES["quick"], "train",
                      {**train, "num_eval_batches": {"agreement": 22}})
  with pytest.raises(ValueError, match=r"train.num_eval_batches at scale 'quick' has no entry "
                                       r"for task 'copy' \(sweep long_range_copy\)"):
    study_config.get_config("lstm,sweep=long_range_copy,scale=quick")
  capacity = dict(study_config.SCALES["quick"]["capacity"])
  for wrong in (("s6",), (), "all"):  # not a quick model, empty, not 'study'
    monkeypatch.setitem(study_config.SCALES["quick"], "capacity", {**capacity, "models": wrong})
    with pytest.raises(ValueError, match=r"capacity.models=.* at scale 'quick': must be"):
      study_config.get_sweep("sweep=capacity,scale=quick")
  assert study_config.capacity_models("standard") == study_config.study_models("standard")


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


def test_study_config_reads_task_constants_from_the_task_configs(tmp_path):
  copy_length = copy_config.get_config().task.copy_length
  members = study_config.get_sweep(_sweep_arg("long_range_copy", "standard", tmp_path))
  chrono = [m for m in members if m.get("model.lstm_init") == "chrono"]
  assert chrono and all(m["model.chrono_max_len"] == m["task.max_delay"] + 2 * copy_length
                        for m in chrono)


# ---------------------------------------------------------------- restore and probes


@pytest.mark.slow  # restores and evaluates trained runs (24-59 CPU-s)
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


@pytest.mark.slow  # the module's trained tiny_runs (45 CPU-s to train, shared)
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


@pytest.mark.slow  # the module's trained tiny_runs (45 CPU-s to train, shared)
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


@pytest.mark.slow  # the module's trained tiny_runs (45 CPU-s to train, shared)
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


@pytest.mark.slow  # the module's trained tiny_runs (45 CPU-s to train, shared)
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


@pytest.mark.slow  # restores and evaluates trained runs (24-59 CPU-s)
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


# ---------------------------------------------------------------- capacity (MQAR, state size)


def _state(name: str, seq_len: int = 64, **fields) -> int:
  from seqresearch.study import state_size  # pylint: disable=g-import-not-at-top
  return state_size.state_floats(models.model_settings(name, **fields), seq_len)


def test_state_floats_of_the_recurrent_family_is_the_hidden_state_lstm_twice():
  # Elman RNN and GRU hold h (H per layer); the LSTM c and h (2H per layer).
  assert _state("rnn", hidden_size=24, num_layers=2) == 24 * 2
  assert _state("gru", hidden_size=24, num_layers=1) == 24
  assert _state("lstm", hidden_size=24, num_layers=3) == 2 * 24 * 3
  # The embedding width and the sequence length do not change a carry.
  assert _state("lstm", 8, hidden_size=24, embed_dim=7) == _state("lstm", 512, hidden_size=24)


def test_state_floats_of_the_linear_recurrences_is_their_state_per_layer_times_layers():
  # LRU: N complex channels per layer, two floats each.
  assert _state("lru", d_model=16, state_size=10, num_layers=3) == 2 * 10 * 3
  # minGRU / minLSTM: h, H per layer.
  assert _state("mingru", hidden_size=12, num_layers=2) == 12 * 2
  assert _state("minlstm", hidden_size=12, num_layers=3) == 12 * 3
  # Mamba (S6): the E x N state plus the k - 1 conv inputs of width E, E = expand * D.
  e = 2 * 16
  assert _state("s6", d_model=16, expand=2, state_size=5, conv_kernel=4, num_layers=2) == \
      (e * 5 + 3 * e) * 2


def test_state_floats_of_the_causal_cnn_is_its_receptive_field_buffer():
  # Layer l keeps (k - 1) * dilation_l inputs of width D: dilations 1, 3, 9 (k^l) or all 1.
  assert _state("conv", d_model=8, kernel_size=3, num_layers=3, dilation="exponential") == \
      8 * 2 * (1 + 3 + 9)
  assert _state("conv", d_model=8, kernel_size=3, num_layers=3, dilation="none") == 8 * 2 * 3


def test_state_floats_of_attention_is_the_kv_cache_it_grows_with_the_sequence():
  assert _state("transformer", 100, d_model=32, num_heads=4, num_layers=2) == 2 * 2 * 32 * 100
  assert _state("transformer", 200, d_model=32, num_heads=4, num_layers=2) == 2 * 2 * 32 * 200
  # A local window keeps only its last r keys and values.
  assert _state("local_attention", 100, d_model=32, num_heads=4, num_layers=2, window=16) == \
      2 * 2 * 32 * 16
  assert _state("local_attention", 10, d_model=32, num_heads=4, num_layers=2, window=16) == \
      2 * 2 * 32 * 10
  with pytest.raises(ValueError, match="seq_len=0"):
    _state("transformer", 0)


def test_describe_reads_a_runs_sizes_state_rate_and_budget_from_its_config(tiny_config):
  from seqresearch.study import state_size  # pylint: disable=g-import-not-at-top
  config = tiny_config("configs/copy.py", "lstm,tiny")
  described = state_size.describe(config, 1234)
  task = build.task_settings(config.task)
  assert described["parameters"] == 1234 and described["seq_len"] == task.seq_len
  assert described["num_layers"] == config.model.num_layers
  assert described["sizes"]["hidden_size"] == config.model.hidden_size
  assert "name" not in described["sizes"] and "num_layers" not in described["sizes"]
  # An LSTM holds its cell and hidden state per layer.
  assert described["state_floats"] == 2 * config.model.hidden_size * config.model.num_layers
  assert described["learning_rate"] == config.optimizer.learning_rate
  assert described["steps"] == config.num_train_steps
  # Attention's cache grows with the task's sequence length.
  attention = state_size.describe(tiny_config("configs/copy.py", "transformer,tiny"), 1)
  m = tiny_config("configs/copy.py", "transformer,tiny").model
  assert attention["state_floats"] == 2 * m.num_layers * m.d_model * attention["seq_len"]


def test_long_range_tables_name_each_models_size_parameters_and_state():
  long_range = experiments.modules(("long_range",))["long_range"]
  row = lambda p, n, s, lr, steps, h=64: {  # noqa: E731
      "parameters": p, "num_layers": 2, "sizes": {"hidden_size": h}, "state_floats": s,
      "seq_len": n, "learning_rate": lr, "steps": steps, "batch_size": 32}
  results = {"models": {"lstm": {"copy": row(58826, 110, 256, 1e-3, 500),
                                 "agreement": row(61000, 105, 256, 3e-3, 1000, h=32)},
                        "transformer": {"agreement": row(17802, 105, 3840, 3e-4, 300)}},
             "copy": {"variants": {}}, "agreement": {"variants": {}}}
  text = long_range.tables(results)
  # Per task where the tasks differ, once where they agree.
  assert ("| LSTM | 2 | hidden_size 64 / hidden_size 32 | 58826 / 61000 | 110 / 105 | 256 | "
          "0.001 / 0.003 | 500 / 1000 |") in text
  assert ("| Transformer | – / 2 | – / hidden_size 64 | – / 17802 | – / 105 | – / 3840 |"
          in text)


@pytest.mark.parametrize("scale", tuple(study_config.SCALES))
def test_capacity_sweep_runs_every_capacity_model_at_growing_states_and_one_length(scale,
                                                                                   tmp_path):
  from configs import mqar as mqar_config  # pylint: disable=g-import-not-at-top
  from seqresearch.study import state_size  # pylint: disable=g-import-not-at-top
  members = study_config.get_sweep(_sweep_arg("capacity", scale, tmp_path))
  capacity = study_config.SCALES[scale]["capacity"]
  chosen = study_config.capacity_models(scale)  # the scale's models, or quick's named few
  assert {m["model"] for m in members} == set(chosen)
  assert set(chosen) <= set(study_config.study_models(scale))
  assert {m["task.length"] for m in members} == {capacity["length"]}
  assert all(m[f"task.{k}"] == v for m in members for k, v in capacity["task"].items())
  assert len(capacity["pairs"]) >= 2
  for model in chosen:
    config = study_config.get_config(f"{model},sweep=capacity,scale={scale}")
    assert config.task.name == mqar_config.get_config().task.name
    states = []
    for size in study_config.capacity_sizes(model, scale):
      own = [m for m in members if m["model"] == model and
             all(m[f"model.{k}"] == v for k, v in size.items())]
      assert sorted(m["task.num_pairs"] for m in own) == sorted(capacity["pairs"])
      fields = {k: v for k, v in config.model.items() if k != "name"} | size
      states.append(state_size.state_floats(models.model_settings(model, **fields),
                                             capacity["length"]))
    assert len(states) >= 2 and states == sorted(set(states)), (model, states)


def _capacity_accuracy(model: str, size: int, pairs: int) -> float:
  """Constructed final accuracies: the RNN gains from its larger state, the LRU needs none,
  attention recalls everything, the CNN (which cannot reach the pairs) stays at chance."""
  family = models.entry(model).family
  if family == "recurrent":
    return {(0, 2): 0.6, (0, 4): 0.3, (1, 2): 1.0, (1, 4): 0.97}[size, pairs]
  if family == "linear_recurrence":
    return 0.98
  if family == "attention":
    return 1.0
  return 1.0 / pairs


def _fake_capacity_runs(study: runner.Study, accuracy) -> None:
  """Writes config.json and a 3-seed summary.json into every capacity run directory."""
  for run in study.runs("capacity"):
    os.makedirs(run.workdir, exist_ok=True)
    with open(os.path.join(run.workdir, "config.json"), "w") as f:
      json.dump(run.config, f)
    fields = dict(run.overrides)
    sizes = study_config.capacity_sizes(run.model, study.scale)
    size = next(i for i, s in enumerate(sizes)
                if all(fields[f"model.{k}"] == v for k, v in s.items()))
    a = accuracy(run.model, size, fields["task.num_pairs"])
    seeds = [max(0.0, min(1.0, a + d)) for d in (-0.01, 0.0, 0.01)]
    with open(os.path.join(run.workdir, "summary.json"), "w") as f:
      json.dump({"eval_by_seed": {str(s): {"accuracy": x} for s, x in enumerate(seeds)}}, f)


def test_capacity_analysis_reads_every_run_and_the_verdict_follows_the_state(
    tmp_path, cited_numbers_equal_results):
  from seqresearch.study import stats  # pylint: disable=g-import-not-at-top
  capacity = experiments.modules(("capacity",))["capacity"]
  study = runner.Study("smoke", str(tmp_path), config=study_config,
                       experiments={"capacity": capacity})
  _fake_capacity_runs(study, _capacity_accuracy)
  results = stats.json_ready(capacity.run(study))
  smoke = study_config.SCALES["smoke"]["capacity"]
  assert results["pairs"] == list(smoke["pairs"]) and results["length"] == smoke["length"]
  assert set(results["variants"]) == set(study_config.study_models("smoke"))
  assert len(results["runs"]) == len(study.runs("capacity"))
  # The long-copy runs were not made here: they count as failed, the MQAR runs do not.
  assert {r.split("/")[1] for r in results["failed_runs"]} == {"capacity_copy"}
  rnn = results["variants"]["rnn"]["sizes"]
  assert [s["state_floats"] for s in rnn] == [8, 16]  # hidden 8 and 16, one layer
  assert rnn[1]["fields"] == {"hidden_size": 16}
  assert rnn[0]["by_pairs"]["4"]["accuracy"]["per_seed"] == pytest.approx([0.29, 0.3, 0.31])
  transformer = results["variants"]["transformer"]["sizes"]
  assert transformer[0]["state_floats"] == 2 * 2 * 8 * 12  # 2 layers, d_model 8, T = 12
  verdict = capacity.verdict(results)
  cited_numbers_equal_results(verdict, results)
  text = verdict.text
  assert "higher accuracy at equal K in 2 of 4 comparisons" in text  # the RNN at K = 2 and 4
  assert "The smallest state already recalls K pairs" in text and "LRU at K = 4" in text
  assert "accuracy rises with state size" in text
  assert "The Transformer stays at or above 0.9" in text
  # The largest LRU (0.98) is level with the Transformer (1.0) at K = 4: against the essay.
  assert len(verdict.contradictions) == 1 and "LRU" in verdict.contradictions[0]
  # Every recurrent state here (8 .. 32 floats) is below the smallest cache (384): no match.
  assert "No recurrent model here holds as many floats" in text
  # Give the larger LRU a 400-float state that recalls little: attention wins at matched state.
  lru = results["variants"]["lru"]["sizes"][1]
  lru["state_floats"] = 400
  lru["by_pairs"]["4"]["accuracy"] = stats.seed_summary([0.29, 0.3, 0.31], examples=32)
  matched = capacity.verdict(results)
  cited_numbers_equal_results(matched, results)
  assert ("the Transformer with a cache of 384 floats scores 1.00, the LRU with a state of 400 "
          "floats 0.30; 95% intervals apart) attention still wins") in matched.text
  # A recurrence above an attention point that is itself at or below chance shows nothing
  # (the quick run said "recalls as well" of S6 0.28 against a Transformer at 0.14, chance 0.25).
  chance = results["chance"]["4"]
  transformer[0]["by_pairs"]["4"]["accuracy"] = stats.seed_summary(
      [chance - 0.12, chance - 0.11, chance - 0.10], examples=32)
  lru["by_pairs"]["4"]["accuracy"] = stats.seed_summary(
      [chance + 0.02, chance + 0.03, chance + 0.04], examples=32)
  unlearnt = capacity.verdict(results)
  cited_numbers_equal_results(unlearnt, results)
  assert "recalls as well" not in unlearnt.text
  assert "neither recalls the pairs" in unlearnt.text and "attention point not above chance" \
      in unlearnt.text
  paths = capacity.figures(results, str(tmp_path / "figures"))
  assert len(paths) == 2 and all(os.path.getsize(p) > 1000 for p in paths)
  assert "| Elman RNN | 16 | hidden_size=16 |" in capacity.tables(results)


def _long_copy_accuracy(model: str, size: int, length: int) -> float:
  """Constructed per-symbol accuracies at smoke lengths 2 .. 6: the RNN's small state fails on
  long strings and its large one does not (state size), the LRU fails at both sizes (length),
  attention copies every length (neither), the CNN stays at chance 1/6 (unlearnt)."""
  family = models.entry(model).family
  far = {"recurrent": (0.1, 1.0), "linear_recurrence": (0.1, 0.1), "attention": (1.0, 1.0)}
  if family not in far:
    return 1 / 6
  return 1.0 + (far[family][size] - 1.0) * (length - 2) / 4


def _fake_long_copy_runs(study: runner.Study, accuracy) -> None:
  """Writes config.json and a 3-seed summary.json (accuracy by L) into every long-copy run."""
  for run in study.runs("capacity_copy"):
    os.makedirs(run.workdir, exist_ok=True)
    with open(os.path.join(run.workdir, "config.json"), "w") as f:
      json.dump(run.config, f)
    fields = dict(run.overrides)
    sizes = study_config.capacity_sizes(run.model, study.scale)
    size = next(i for i, s in enumerate(sizes)
                if all(fields[f"model.{k}"] == v for k, v in s.items()))
    lengths = range(fields["task.min_length"], fields["task.max_length"] + 1)
    by_seed = {}
    for seed, shift in enumerate((-0.01, 0.0, 0.01)):
      by_length = {str(n): max(0.0, min(1.0, accuracy(run.model, size, n) + shift))
                   for n in lengths}
      by_seed[str(seed)] = {"accuracy": sum(by_length.values()) / len(by_length),
                            "accuracy_by_distance": by_length}
    with open(os.path.join(run.workdir, "summary.json"), "w") as f:
      json.dump({"eval_by_seed": by_seed}, f)


def test_long_copy_accuracy_against_length_per_state_size_and_what_explains_it(
    tmp_path, cited_numbers_equal_results):
  from seqresearch.study import stats  # pylint: disable=g-import-not-at-top
  capacity = experiments.modules(("capacity",))["capacity"]
  study = runner.Study("smoke", str(tmp_path), config=study_config,
                       experiments={"capacity": capacity})
  _fake_capacity_runs(study, _capacity_accuracy)
  _fake_long_copy_runs(study, _long_copy_accuracy)
  results = stats.json_ready(capacity.run(study))
  assert not results["failed_runs"]
  long_copy = results["long_copy"]
  smoke = study_config.SCALES["smoke"]["capacity"]["long_copy"]
  assert long_copy["lengths"] == list(smoke["lengths"]) == [2, 6]
  assert long_copy["labels"] == ["2", "3", "4", "5", "6"] and long_copy["chance"] == 1 / 6
  assert set(long_copy["variants"]) == set(study_config.study_models("smoke"))
  rnn = long_copy["variants"]["rnn"]["sizes"]
  assert [s["state_floats"] for s in rnn] == [8, 16]  # the capacity sizes, one layer
  assert rnn[0]["by_length"]["6"]["per_seed"] == pytest.approx([0.09, 0.1, 0.11])
  assert rnn[1]["seeds_solved_by_length"]["6"] == 3 and rnn[0]["seeds_solved_by_length"]["6"] == 0
  # The transformer's cache grows with the sequence, 2·max L.
  assert long_copy["variants"]["transformer"]["sizes"][0]["state_floats"] == 2 * 2 * 8 * 12
  assert len(results["runs"]) == len(study.runs("capacity")) + len(study.runs("capacity_copy"))
  verdict = capacity.verdict(results)
  cited_numbers_equal_results(verdict, results)
  text = verdict.text
  assert "Long-copy accuracy is explained by the state size for Elman RNN (1.00 → 1.00 with L" \
      in text and "0.10 → 1.00 with the state at L = 6" in text
  assert "by the length (the distance) alone for LRU (1.00 → 0.10" in text
  assert "by neither: it copies every length at its smallest state for Transformer" in text
  assert "by nothing it learnt: no size is above chance for Causal CNN" in text
  # The RNN's large state falls too (1.0 -> 0.5) and still beats the small one: both.
  large = long_copy["variants"]["rnn"]["sizes"][1]["by_length"]
  large["6"] = stats.seed_summary([0.49, 0.5, 0.51], examples=6)
  both = capacity.verdict(results)
  cited_numbers_equal_results(both, results)
  assert "explained by both the length and the state size for Elman RNN" in both.text
  # Attention that falls with L: a full cache holds the string, a local window does not.
  transformer = long_copy["variants"]["transformer"]["sizes"]
  transformer[-1]["by_length"]["6"] = stats.seed_summary([0.49, 0.5, 0.51], examples=6)
  # The window is the run's own (3 here), not the model's default.
  assert models.model_settings("local_attention").attention_window != 3
  long_copy["variants"]["local_attention"] = {
      "sizes": [dict(size, attention_window=3) for size in transformer]}
  falls = capacity.verdict(results)
  cited_numbers_equal_results(falls, results)
  falls = falls.text
  assert "The Transformer's accuracy falls with L although its key-value cache holds" in falls
  assert ("The Local attention attends within a window of 3 positions per layer (the query "
          "itself included), so its cache does not hold the whole string") in falls
  assert "Local attention's accuracy falls with L although" not in falls
  # A model whose runs lack a length cell is undecided, said as a sentence.
  del long_copy["variants"]["lru"]["sizes"][-1]["by_length"]["6"]
  assert ("Whether the length or the state size explains long-copy accuracy is undecided at "
          "this scale for LRU.") in capacity.verdict(results).text
  del long_copy["variants"]["local_attention"]
  paths = capacity.figures(results, str(tmp_path / "figures"))
  assert len(paths) == 3 and os.path.basename(paths[2]) == "capacity_long_copy.png"
  assert os.path.getsize(paths[2]) > 1000
  table = capacity.tables(results)
  assert "| L = 2 | L = 3 | L = 4 | L = 5 | L = 6 |" in table
  assert "| Elman RNN | 8 | hidden_size=8 |" in table and "(0 of 3)" in table


def test_capacity_verdict_is_undecided_when_nothing_is_learnt(tmp_path,
                                                              cited_numbers_equal_results):
  from seqresearch.study import stats  # pylint: disable=g-import-not-at-top
  capacity = experiments.modules(("capacity",))["capacity"]
  study = runner.Study("smoke", str(tmp_path), config=study_config,
                       experiments={"capacity": capacity})
  # The small models emit blanks (accuracy 0, as untrained smoke runs do), the large ones sit
  # at chance 1/K: intervals apart, but neither recalls anything.
  _fake_capacity_runs(study, lambda model, size, pairs: size / pairs)
  results = stats.json_ready(capacity.run(study))
  verdict = capacity.verdict(results)
  cited_numbers_equal_results(verdict, results)
  assert "higher accuracy at equal K" not in verdict.text
  assert "No 95% interval above chance 1/K at either size" in verdict.text
  assert "undecided at this scale" in verdict.text
  assert "not learnt within the budget" in verdict.text
  assert "accuracy rises with state size" not in verdict.text and not verdict.contradictions
  # Chance (1/K) falls with K: a model at chance at every K does not 'fall as K grows'.
  assert "falls as K grows" not in verdict.text


@pytest.mark.slow
def test_capacity_report_end_to_end_at_smoke_scale(tmp_path):
  # About 3 minutes on a loaded 2-core CPU (16 tiny MQAR runs), hence slow-marked.
  result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "report.py"),
                           "--scale=smoke", "--experiments=capacity", f"--workdir={tmp_path}"],
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  text = (tmp_path / "REPORT.md").read_text()
  module = experiments.modules(("capacity",))["capacity"]
  assert f"## 1. {module.TITLE}" in text and "Pipeline check only" in text
  assert "**Verdict.**" not in text
  results = _strict_json(tmp_path / "capacity" / "results.json")
  assert set(results["variants"]) == set(study_config.study_models("smoke"))
  assert len(results["figures"]) == 3  # MQAR by K and by state; long copy by L
  for figure in results["figures"]:
    assert (tmp_path / figure).stat().st_size > 1000
  for sizes in results["variants"].values():
    assert len(sizes["sizes"]) == 2
    for size in sizes["sizes"]:
      assert sorted(size["by_pairs"], key=int) == ["2", "4"]
      for point in size["by_pairs"].values():
        summary = json.loads((tmp_path / point["run"] / "summary.json").read_text())
        assert point["accuracy"]["per_seed"] == pytest.approx(
            [summary["eval_by_seed"][k]["accuracy"] for k in sorted(summary["eval_by_seed"])])
