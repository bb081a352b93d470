"""The smoke-scale report end to end: `scripts/report.py --scale=smoke` trains tiny runs, runs
every experiment and writes REPORT.md; every number of every verdict is traced to its JSON.

One test function runs the report once and checks it part by part: pytest-xdist (`-n 2`)
spreads test functions over workers, and each worker would build a module fixture again.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from seqresearch import report

SCRIPT = os.path.join(ROOT, "scripts", "report.py")


def test_smoke_report_end_to_end(tmp_path):
  result = subprocess.run([sys.executable, SCRIPT, "--scale=smoke", f"--workdir={tmp_path}"],
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  _check_sections_table_1_and_figures(tmp_path)
  _check_every_verdict_number_equals_the_json_it_came_from(tmp_path)
  _check_runs_are_traceable_and_analyses_measured_what_they_claim(tmp_path)
  _check_rerun_reuses_finished_runs(tmp_path)


def _results(workdir, name: str) -> dict:
  return json.loads((workdir / name / report.RESULTS_FILE).read_text())


def _check_sections_table_1_and_figures(smoke) -> None:
  text = (smoke / report.REPORT_FILE).read_text()
  assert text.startswith("# Why attention beats RNNs/LSTMs — measured")
  assert "## Results that contradict the essay" in text
  assert "## Table 1, measured" in text
  table1 = text.split("## Table 1, measured")[1].split("\n## ")[0]
  for entry in ("O(n²·d)", "O(n·d²)", "O(1)", "O(n)", "Recurrent (LSTM)", "Self-attention"):
    assert entry in table1
  for i, name in enumerate(report.EXPERIMENTS, start=1):
    module = report.load_experiment(name)
    assert f"## {i}. {module.TITLE}" in text
    assert f"`{name}/{report.RESULTS_FILE}`" in text
  images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
  assert len(images) >= len(report.EXPERIMENTS)
  for image in images:
    assert (smoke / image).stat().st_size > 1000, image


def _check_every_verdict_number_equals_the_json_it_came_from(smoke) -> None:
  text = (smoke / report.REPORT_FILE).read_text()
  for name in report.EXPERIMENTS:
    results = _results(smoke, name)
    verdict = results["verdict"]
    assert f"**Verdict.** {verdict['text']}" in text
    assert verdict["cited"], name
    for cited in verdict["cited"]:
      value = report.lookup(results, cited["path"])
      assert value == cited["value"] or (math.isnan(value) and math.isnan(cited["value"])), \
          (name, cited)
      assert report.fmt(value, cited["spec"]) == cited["text"]
      assert cited["text"] in verdict["text"]
    # Every number printed in the verdict is one of the cited ones (no hand-typed numbers),
    # apart from ratios and counts derived from cited values and names like "n^a" or "L0H1".
    printed = re.findall(r"(?<![\w.^])-?\d+\.\d+(?![\w×])", verdict["text"])
    cited_texts = {c["text"] for c in verdict["cited"]}
    assert set(printed) <= cited_texts | {"0.9", "1.0"}, (name, set(printed) - cited_texts)
    for contradiction in verdict["contradictions"]:
      assert contradiction in text.split("## Table 1")[0]


def _check_runs_are_traceable_and_analyses_measured_what_they_claim(smoke) -> None:
  long_range = _results(smoke, "long_range")
  for variant in long_range["copy"]["variants"].values():
    for point in variant.values():
      summary = json.loads((smoke / point["run"] / "summary.json").read_text())
      per_seed = [summary["eval_by_seed"][k]["accuracy"] for k in sorted(summary["eval_by_seed"])]
      assert point["accuracy"]["per_seed"] == pytest.approx(per_seed)
      assert len(per_seed) == 1  # the smoke scale trains one seed per run
  assert long_range["copy"]["distances"] == [13, 18]
  assert set(long_range["agreement"]["variants"]["lstm"]["by_attractors"]) == {"0", "1", "2"}

  extrapolation = _results(smoke, "extrapolation")
  assert extrapolation["train_distances"] == [7, 12]  # the reused long_range_agreement runs
  assert set(extrapolation["variants"]) == {"lstm", "transformer"}
  for variant in extrapolation["variants"].values():
    assert sorted(variant["by_distance"], key=int) == ["12", "48"]  # up to 4x the trained

  gradient = _results(smoke, "gradient_path")
  assert set(gradient["variants"]) == {"lstm", "transformer"}
  for variant in gradient["variants"].values():
    assert variant["distance"] == 18 and len(variant["init"]["mean_norm"]) == 19

  attention = _results(smoke, "attention_maps")
  assert attention["copy"]["distances"] == [13, 18]
  assert set(attention["copy"]["heads"]) == {"L0H0", "L0H1", "L1H0", "L1H1"}

  parallelism = _results(smoke, "parallelism")
  for name, rows in parallelism["models"].items():
    expected = [1, 1] if name == "transformer" else parallelism["lengths"]
    assert rows["sequential_depth"] == expected
    assert all(t > 0 for t in rows["forward_ms"] + rows["train_ms"])

  complexity = _results(smoke, "complexity")
  assert complexity["by_n"]["rnn"]["exponent"] == pytest.approx(1.0, abs=1e-6)


def _check_rerun_reuses_finished_runs(smoke) -> None:
  summaries = sorted(smoke.glob("runs/*/*/summary.json"))
  stamps = [os.path.getmtime(p) for p in summaries]
  result = subprocess.run([sys.executable, SCRIPT, "--scale=smoke", f"--workdir={smoke}",
                           "--experiments=long_range"], capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert [os.path.getmtime(p) for p in summaries] == stamps
  text = (smoke / report.REPORT_FILE).read_text()
  assert "## 1. " in text and "## 2. " not in text
