"""The published copy of a study report: every link resolves, runs stay out, bad input refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from seqresearch.study import publish, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _study(workdir, png_bytes: int = 100) -> None:
  """A finished report as scripts/report.py leaves it, with a run directory beside it."""
  for name in ("long_range", "capacity"):
    os.makedirs(workdir / name)
    (workdir / name / "results.json").write_text('{"verdict": {}}')
    (workdir / name / "a.png").write_bytes(b"\x89PNG" + b"0" * png_bytes)
  (workdir / "learning_rates.json").write_text('{"lstm": 0.001}')
  os.makedirs(workdir / "runs" / "long_range_copy" / "r1" / "checkpoints")
  (workdir / "runs" / "long_range_copy" / "r1" / "summary.json").write_text("{}")
  (workdir / report.REPORT_FILE).write_text(
      f"{report.TITLE}\n\nScale `standard`.\n\n![a](long_range/a.png)\n![b](capacity/a.png)\n"
      "Source of the tables: `long_range/results.json`. Runs: `runs/long_range_copy/r1`\n")


def test_the_copy_holds_the_report_its_json_figures_and_rates_and_every_link_resolves(tmp_path):
  _study(tmp_path / "study")
  names = publish.publish(str(tmp_path / "study"), str(tmp_path / "out"))
  assert sorted(names) == sorted([
      "REPORT.md", "capacity/results.json", "long_range/results.json", "capacity/a.png",
      "long_range/a.png", "learning_rates.json"])
  out = tmp_path / "out"
  assert not (out / "runs").exists()  # no training runs in git
  text = (out / "REPORT.md").read_text()
  assert text.startswith(report.TITLE + "\n\n> Published copy of")
  for link in re.findall(r"\]\(([^)]+)\)|`(\w+/results\.json)`", text):
    assert (out / (link[0] or link[1])).is_file(), link
  assert (out / "long_range" / "a.png").read_bytes() == \
      (tmp_path / "study" / "long_range" / "a.png").read_bytes()
  # Publishing again replaces the copy (a figure that is gone is gone from the copy too).
  os.remove(tmp_path / "study" / "capacity" / "a.png")
  publish.publish(str(tmp_path / "study"), str(out))
  assert not (out / "capacity" / "a.png").exists()


def test_a_missing_smoke_failed_or_oversized_report_is_refused(tmp_path):
  with pytest.raises(ValueError, match="no REPORT.md"):
    publish.publish(str(tmp_path / "none"), str(tmp_path / "out"))
  _study(tmp_path / "big", png_bytes=publish.MAX_BYTES)
  with pytest.raises(ValueError, match=r"more than 1000000 \(largest: \w+/a.png"):
    publish.publish(str(tmp_path / "big"), str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()
  _study(tmp_path / "failed")
  (tmp_path / "failed" / "capacity" / "error.txt").write_text("Traceback")
  with pytest.raises(ValueError, match="analyses failed"):
    publish.publish(str(tmp_path / "failed"), str(tmp_path / "out"))
  _study(tmp_path / "smoke")
  (tmp_path / "smoke" / report.REPORT_FILE).write_text(f"{report.TITLE}\n\n{report.SMOKE_BANNER}")
  with pytest.raises(ValueError, match="pipeline check"):
    publish.publish(str(tmp_path / "smoke"), str(tmp_path / "out"))


def test_the_script_refuses_bad_input_in_one_line_with_status_2(tmp_path):
  result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "publish_report.py"),
                           f"--workdir={tmp_path}/none", f"--out={tmp_path}/out"],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f"error: workdir={tmp_path}/none: no REPORT.md; run scripts/report.py first."]
