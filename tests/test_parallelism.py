"""The parallelism experiment: widths per scale, the sweep over widths, and the verdict that
splits a time difference into work (FLOPs) and use of the hardware (FLOP rate)."""

from __future__ import annotations

import itertools

import pytest
from ml_collections import config_dict

import experiments
from configs import study as study_config
from seqresearch.analysis import flops
from seqresearch.study import runner, stats

parallelism = experiments.modules(("parallelism",))["parallelism"]


@pytest.mark.parametrize("scale", tuple(study_config.SCALES))
def test_every_scale_times_several_widths_with_n_below_at_and_above_d(scale):
  s = study_config.SCALES[scale]["parallelism"]
  assert "width" not in s and len(s["widths"]) >= 2
  regimes = {parallelism.regime(n, d) for n, d in itertools.product(s["lengths"], s["widths"])}
  if scale == "smoke":  # the pipeline only: small
    assert max(s["widths"]) <= 32 and max(s["lengths"]) <= 64
  else:
    assert regimes == {"n < d", "n ≈ d", "n > d"}, (scale, regimes)
  if scale == "quick":  # the whole quick report stays within about 20 minutes
    assert max(s["widths"]) <= 128 and max(s["lengths"]) <= 512


def test_regimes_are_within_a_factor_two():
  assert parallelism.regime(32, 128) == "n < d"
  assert parallelism.regime(64, 128) == "n < d"
  assert parallelism.regime(65, 128) == "n ≈ d" == parallelism.regime(128, 128)
  assert parallelism.regime(255, 128) == "n ≈ d"
  assert parallelism.regime(256, 128) == "n > d"


def _rows(ms: list[float], spread: float, gflop: list[float], depth: list[int]) -> dict:
  """Measured rows: median `ms`, min/max ± spread, `gflop` GFLOPs per step."""
  lo = [t - spread for t in ms]
  hi = [t + spread for t in ms]
  flops = [g * 1e9 for g in gflop]
  return {"forward_ms": ms, "train_ms": ms, "train_ms_min": lo, "train_ms_max": hi,
          "train_flops": flops,
          "train_gflops_per_s": [f / t / 1e6 for f, t in zip(flops, ms)],
          "train_gflops_per_s_min": [f / t / 1e6 for f, t in zip(flops, hi)],
          "train_gflops_per_s_max": [f / t / 1e6 for f, t in zip(flops, lo)],
          "sequential_depth": depth, "train_sequential_depth": depth,
          "load_average": [1.0] * len(ms),
          "dataflow_depth": {"32": depth[0], "128": depth[1]},
          "exponents": {"forward_ms": 1.0, "train_ms": 1.0, "train_flops": 1.0,
                        "sequential_depth": 1.0 if depth[1] > 1 else 0.0,
                        "dataflow_depth": 1.0 if depth[1] > 1 else 0.0}}


def _results(transformer_32: dict, transformer_128: dict) -> dict:
  """LSTM against Transformer at d = 32 and 128, n = 32, 128, 512."""
  models = {"lstm": {"32": _rows([10.0, 40.0, 160.0], 1.0, [0.1, 0.4, 1.6], [32, 128, 512]),
                     "128": _rows([20.0, 80.0, 320.0], 1.0, [1.0, 4.0, 16.0],
                                  [32, 128, 512])},
            "transformer": {"32": transformer_32, "128": transformer_128}}
  lengths, widths = [32, 128, 512], [32, 128]
  return {"backend": "cpu", "device": "cpu", "cpu_count": 2, "lengths": lengths,
          "widths": widths, "batch_size": 8, "repetitions": 3,
          "load_average_before": [1.0, 1.0, 1.0], "load_average_after": [1.5, 1.0, 1.0],
          "models": models, "comparisons": parallelism.compare(models, lengths, widths)}


def test_verdict_separates_more_work_from_not_using_the_parallel_hardware(
    cited_numbers_equal_results):
  # d = 32: attention slower at n = 512 with 10x the FLOPs at a higher rate (more work), faster
  # at n = 32 at a higher rate (the LSTM leaves the hardware idle), level at n = 128.
  # d = 128: attention slower at n = 32 with fewer FLOPs, so at a lower rate: against the essay.
  results = _results(
      _rows([5.0, 40.5, 400.0], 1.0, [0.1, 0.8, 16.0], [1, 1, 1]),
      _rows([30.0, 40.0, 100.0], 1.0, [0.5, 4.0, 16.0], [1, 1, 1]))
  cells = results["comparisons"]
  assert [c["cause"] for c in cells["32"]] == ["better hardware use", "level", "more work"]
  assert [c["cause"] for c in cells["128"]] == ["worse hardware use", "better hardware use",
                                                "better hardware use"]
  assert [c["regime"] for c in cells["128"]] == ["n < d", "n ≈ d", "n > d"]
  more = cells["32"][2]
  assert more["flop_ratio"] == pytest.approx(10.0) and more["time_ratio"] == pytest.approx(2.5)
  assert more["rate_ratio"] == pytest.approx(4.0)  # time ratio = FLOP ratio / rate ratio
  verdict = parallelism.verdict(results)
  cited_numbers_equal_results(verdict, results)
  text = verdict.text
  assert "takes 2.50× the time of the LSTM for 10.00× the FLOPs at 4.00× the FLOP rate " \
         "(more work)" in text
  assert "slower because it does more work (its FLOP rate not distinguishably lower): " \
         "n = 512, d = 32" in text
  assert "cannot use the parallel hardware" in text and "n = 32, d = 32" in text
  assert "Level within the spread" in text and "n = 128, d = 32" in text
  # On a CPU a lower rate is said, not held against the essay (its claim is about parallel
  # hardware); on an accelerator it is a contradiction.
  assert not verdict.contradictions
  assert "lower FLOP rate than the recurrence at n = 32, d = 128" in text
  on_gpu = parallelism.verdict(dict(results, backend="gpu"))
  assert len(on_gpu.contradictions) == 1
  assert "n = 32, d = 128" in on_gpu.contradictions[0]
  assert "lower FLOP rate" in on_gpu.contradictions[0]


def test_a_slower_attention_that_does_more_work_is_not_a_contradiction(cited_numbers_equal_results):
  # The old verdict called attention 'slower' at the longest n (more work there) a
  # contradiction of the essay; the split says it is the work, at an equal or better rate.
  results = _results(
      _rows([5.0, 80.0, 800.0], 1.0, [0.1, 1.6, 32.0], [1, 1, 1]),
      _rows([10.0, 80.0, 640.0], 1.0, [0.5, 4.0, 32.0], [1, 1, 1]))
  verdict = parallelism.verdict(results)
  cited_numbers_equal_results(verdict, results)
  assert not verdict.contradictions
  assert "does more work" in verdict.text
  # It names the recurrences it timed (here the LSTM alone), not every row of Table 1.
  assert "the fastest recurrent one of Table 1's rows timed here (LSTM)" in verdict.text
  assert "Elman RNN" not in verdict.text


def test_without_a_higher_attention_rate_the_verdict_says_the_recurrence_is_not_held_back(
    cited_numbers_equal_results):
  # Same FLOP rate everywhere: any time difference is work.
  same = lambda ms: _rows(ms, 0.5, [m * 0.01 for m in ms], [1, 1, 1])  # noqa: E731
  results = _results(same([5.0, 40.0, 800.0]), same([10.0, 80.0, 640.0]))
  results["models"]["lstm"] = {
      d: _rows(rows["train_ms"], 0.5, [m * 0.01 for m in rows["train_ms"]], [32, 128, 512])
      for d, rows in results["models"]["lstm"].items()}
  results["comparisons"] = parallelism.compare(results["models"], [32, 128, 512], [32, 128])
  verdict = parallelism.verdict(results)
  cited_numbers_equal_results(verdict, results)
  assert "In no cell does attention reach a FLOP rate above" in verdict.text
  assert not verdict.contradictions


def test_a_higher_attention_rate_where_attention_is_only_slower_is_not_called_absent(
    cited_numbers_equal_results):
  # Every cell: attention slower with 4x the FLOPs at twice the LSTM's FLOP rate (more work).
  # The old verdict said no cell reaches a rate above the recurrence's range.
  results = _results(_rows([20.0, 80.0, 320.0], 1.0, [0.4, 1.6, 6.4], [1, 1, 1]),
                     _rows([40.0, 160.0, 640.0], 1.0, [4.0, 16.0, 64.0], [1, 1, 1]))
  cells = [c for d in ("32", "128") for c in results["comparisons"][d]]
  assert {(c["time"], c["rate"], c["cause"]) for c in cells} == {("slower", "higher",
                                                                   "more work")}
  verdict = parallelism.verdict(results)
  cited_numbers_equal_results(verdict, results)
  assert "In no cell does attention reach a FLOP rate above" not in verdict.text
  assert ("Attention's FLOP rate lies above the recurrence's range at n = 32, d = 32; "
          "n = 128, d = 32") in verdict.text
  assert "not faster there" in verdict.text and not verdict.contradictions


def test_primitives_without_a_flop_rule_are_stored_per_point(monkeypatch):
  # The old measure counted such primitives as 0 and dropped `uncounted`.
  forward, train, params, tokens = parallelism._programs("rnn", 8, 4, 2)
  full = flops.flop_count(train, params, tokens)  # strict: every primitive has a rule
  assert not full.uncounted and full.by_primitive["tanh"] > 0
  monkeypatch.setattr(flops, "ELEMENTWISE_PRIMITIVES", flops.ELEMENTWISE_PRIMITIVES - {"tanh"})
  rows = parallelism.measure("rnn", 8, [4], batch=2, repetitions=1, max_dataflow_length=0)
  assert rows["train_uncounted"] == [["tanh"]]
  assert rows["train_flops"] == [full.total - full.by_primitive["tanh"]]


def test_an_incomplete_flop_count_is_named_and_not_held_against_the_essay(
    cited_numbers_equal_results):
  # The Transformer's count omits a primitive at n = 32, d = 32, where it is slower at a
  # lower rate: named in the table and the verdict, and no contradiction.
  transformer_32 = _rows([30.0, 40.0, 100.0], 1.0, [0.05, 0.4, 1.6], [1, 1, 1])
  transformer_32["train_uncounted"] = [["cudnn_attention"], [], []]
  results = _results(transformer_32, _rows([5.0, 20.0, 80.0], 1.0, [1.0, 4.0, 16.0],
                                           [1, 1, 1]))
  for rows in results["models"]["lstm"].values():
    rows["train_uncounted"] = [[], [], []]
  results["comparisons"] = parallelism.compare(results["models"], [32, 128, 512], [32, 128])
  cell = results["comparisons"]["32"][0]
  assert cell["cause"] == "worse hardware use" and cell["uncounted"] == ["cudnn_attention"]
  assert results["comparisons"]["32"][1]["uncounted"] == []
  assert "(FLOPs omit cudnn_attention)" in parallelism.tables(results)
  verdict = parallelism.verdict(results)
  cited_numbers_equal_results(verdict, results)
  assert "incomplete" in verdict.text and "n = 32, d = 32 (omitting cudnn_attention)" in \
      verdict.text
  assert not verdict.contradictions


@pytest.mark.slow  # times every model
def test_run_times_every_model_at_every_width_and_length(tmp_path, monkeypatch,
                                                         cited_numbers_equal_results):
  monkeypatch.setattr(study_config, "study_models", lambda scale: ("rnn", "transformer"))
  study = runner.Study("smoke", str(tmp_path), config=study_config,
                       experiments={"parallelism": parallelism})
  study.settings = config_dict.ConfigDict({"parallelism": {
      "lengths": (4, 16), "widths": (8, 16), "batch_size": 2, "repetitions": 2,
      "max_dataflow_length": 4}})
  results = stats.json_ready(parallelism.run(study))
  assert results["widths"] == [8, 16] and results["lengths"] == [4, 16]
  for name in ("rnn", "transformer"):
    assert sorted(results["models"][name], key=int) == ["8", "16"]
    for d in ("8", "16"):
      rows = results["models"][name][d]
      assert all(lo <= t <= hi for lo, t, hi in zip(rows["train_ms_min"], rows["train_ms"],
                                                    rows["train_ms_max"]))
      assert rows["train_flops"][1] > rows["train_flops"][0] > 0
      assert rows["train_gflops_per_s_min"][0] <= rows["train_gflops_per_s"][0] <= \
          rows["train_gflops_per_s_max"][0]
      assert list(rows["dataflow_depth"]) == ["4"]
    # The FLOPs of the timed program grow with the width at every n.
    assert all(a < b for a, b in zip(results["models"][name]["8"]["train_flops"],
                                     results["models"][name]["16"]["train_flops"]))
  assert results["models"]["rnn"]["8"]["sequential_depth"] == [4, 16]
  assert results["models"]["transformer"]["16"]["sequential_depth"] == [1, 1]
  cells = results["comparisons"]
  assert [c["regime"] for c in cells["16"]] == ["n < d", "n ≈ d"]
  assert all(c["attention"] == "transformer" and c["recurrent"] == "rnn"
             for c in cells["8"] + cells["16"])
  verdict = parallelism.verdict(results)
  cited_numbers_equal_results(verdict, results)
  assert "At d = 16: n = 4 (n < d)" in verdict.text
  paths = parallelism.figures(results, str(tmp_path / "figures"))
  assert len(paths) == 2
  assert "Width d = 16" in parallelism.tables(results)


def test_with_no_table1_recurrence_timed_the_verdict_says_none():
  results = _results(_rows([5.0, 40.0, 400.0], 1.0, [0.1, 0.8, 16.0], [1, 1, 1]),
                     _rows([30.0, 40.0, 100.0], 1.0, [0.5, 4.0, 16.0], [1, 1, 1]))
  results["models"]["mingru"] = results["models"].pop("lstm")  # a linear recurrence only
  results["comparisons"] = parallelism.compare(results["models"], [32, 128, 512], [32, 128])
  text = parallelism.verdict(results).text
  assert "the fastest recurrent one of Table 1's rows timed here (none)" in text
