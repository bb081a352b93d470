"""The published copy of a study report: every link resolves, runs stay out, bad input refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from seqresearch.study import publish, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _png(path, size: int = 40) -> None:
  """A small line plot's colours: white, a few lines, an anti-aliased edge."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  image = Image.new("RGB", (size, size), "white")
  draw = ImageDraw.Draw(image)
  for i, colour in enumerate(("#1f77b4", "#d62728", "#2ca02c")):
    draw.line([(0, 5 + 10 * i), (size, 15 + 10 * i)], fill=colour, width=2)
  image.save(path)


def _study(workdir, json_numbers: int = 3) -> None:
  """A finished report as scripts/report.py leaves it, with a run directory beside it and a
  figure of an earlier report that this one no longer shows."""
  for name in ("long_range", "capacity"):
    os.makedirs(workdir / name)
    results = {"verdict": {}, "x": [i / 7 for i in range(json_numbers)]}
    (workdir / name / "results.json").write_text(json.dumps(results, indent=2))
    _png(workdir / name / "a.png")
  _png(workdir / "capacity" / "stale.png")
  os.makedirs(workdir / "anchors")
  (workdir / "anchors" / "results.json").write_text("{}")  # a section this report lacks
  (workdir / "learning_rates.json").write_text('{"lstm": 0.001}')
  os.makedirs(workdir / "runs" / "long_range_copy" / "r1" / "checkpoints")
  (workdir / "runs" / "long_range_copy" / "r1" / "summary.json").write_text("{}")
  (workdir / report.REPORT_FILE).write_text(
      f"{report.TITLE}\n\nScale `standard`.\n\n![long_range 1](long_range/a.png)\n"
      "Source of the tables: `long_range/results.json`.\n\n![capacity 1](capacity/a.png)\n"
      "Source of the tables: `capacity/results.json`. Runs: `runs/long_range_copy/r1`\n")


def test_the_copy_holds_the_report_and_exactly_what_it_links(tmp_path):
  _study(tmp_path / "study")
  names = publish.publish(str(tmp_path / "study"), str(tmp_path / "out"))
  assert sorted(names) == sorted([
      "REPORT.md", "capacity/results.json", "long_range/results.json", "capacity/a.png",
      "long_range/a.png", "learning_rates.json"])
  out = tmp_path / "out"
  assert not (out / "runs").exists()  # no training runs in git
  assert not (out / "capacity" / "stale.png").exists() and not (out / "anchors").exists()
  assert not (tmp_path / "out.tmp").exists()
  text = (out / "REPORT.md").read_text()
  assert text.startswith(report.TITLE + "\n\n" + publish.NOTE + "\n")
  for link in re.findall(r"\]\(([^)]+)\)|`(\w+/results\.json)`", text):
    assert (out / (link[0] or link[1])).is_file(), link
  # Smaller, not different: the JSON values to 7 significant digits (float32 holds about
  # 7), the same picture in a palette.
  for name in ("long_range/results.json", "capacity/results.json"):
    copy = json.loads((out / name).read_text())
    original = json.loads((tmp_path / "study" / name).read_text())
    # The verdict is REPORT.md's text (with the key of each number): not repeated in the JSON.
    assert "verdict" in original and "verdict" not in copy
    assert len(copy["x"]) == len(original["x"])
    assert copy["x"] == pytest.approx(original["x"], rel=5e-7, abs=0)  # half a unit of the 7th
    assert copy["x"][1] == 0.1428571 and original["x"][1] == 1 / 7
    assert (out / name).stat().st_size < (tmp_path / "study" / name).stat().st_size
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(out / "long_range" / "a.png") as copy, \
       Image.open(tmp_path / "study" / "long_range" / "a.png") as original:
    assert copy.mode == "P" and copy.size == original.size
    assert copy.convert("RGB").getpixel((0, 5)) == original.getpixel((0, 5))  # on a line
    assert copy.convert("RGB").getpixel((39, 39)) == (255, 255, 255)
  # Publishing again replaces the earlier copy: a section no longer in the report is gone.
  (tmp_path / "study" / report.REPORT_FILE).write_text(
      f"{report.TITLE}\n\n![long_range 1](long_range/a.png)\n`long_range/results.json`\n")
  publish.publish(str(tmp_path / "study"), str(out))
  assert not (out / "capacity").exists() and (out / "long_range" / "a.png").is_file()


def test_every_model_keeps_its_own_colour_in_a_published_figure(tmp_path):
  """Ten model lines over a colour gradient (a heatmap's worth of colours): each line keeps
  its exact colour. Median cut alone gave minGRU's olive and local attention's orange one
  colour in the standard report."""
  from matplotlib import colors  # pylint: disable=g-import-not-at-top
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  from seqresearch.models import registry  # pylint: disable=g-import-not-at-top
  image = Image.new("RGB", (200, 120), "white")
  draw = ImageDraw.Draw(image)
  for x in range(200):  # a gradient that competes for the palette
    draw.line([(x, 60), (x, 119)], fill=(x, 255 - x, (3 * x) % 256))
  # A large patch a shade off the LSTM's blue: median cut takes it, and Pillow's palette
  # lookup (reduced precision) would send the exact blue to it.
  draw.rectangle([(0, 100), (199, 119)], fill=(29, 117, 178))
  model_colours = [colors.to_hex(e.color) for e in registry.MODELS.values()]
  for i, colour in enumerate(model_colours):
    draw.line([(0, 2 + 5 * i), (199, 2 + 5 * i)], fill=colour, width=2)
  _study(tmp_path / "study")
  image.save(tmp_path / "study" / "long_range" / "a.png")
  publish.publish(str(tmp_path / "study"), str(tmp_path / "out"))
  with Image.open(tmp_path / "out" / "long_range" / "a.png") as copy:
    rgb = copy.convert("RGB")
    kept = [colors.to_hex([c / 255 for c in rgb.getpixel((100, 2 + 5 * i))])
            for i in range(len(model_colours))]
  assert kept == model_colours


def test_a_missing_smoke_failed_broken_or_oversized_report_is_refused(tmp_path):
  with pytest.raises(ValueError, match="no REPORT.md"):
    publish.publish(str(tmp_path / "none"), str(tmp_path / "out"))
  _study(tmp_path / "big", json_numbers=publish.MAX_BYTES // 10)
  with pytest.raises(ValueError, match=r"as published, more than 1000000 \(largest: "
                                       r"\w+/results.json"):
    publish.publish(str(tmp_path / "big"), str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()
  _study(tmp_path / "failed")
  with open(tmp_path / "failed" / report.REPORT_FILE, "a") as f:
    f.write(f"\n{report.FAILED_ANALYSES} (traceback in `<experiment>/error.txt`): capacity\n")
  with pytest.raises(ValueError, match="lists failed analyses"):
    publish.publish(str(tmp_path / "failed"), str(tmp_path / "out"))
  _study(tmp_path / "broken")
  os.remove(tmp_path / "broken" / "capacity" / "a.png")
  with pytest.raises(ValueError, match="links files that do not exist: capacity/a.png"):
    publish.publish(str(tmp_path / "broken"), str(tmp_path / "out"))
  _study(tmp_path / "smoke")
  (tmp_path / "smoke" / report.REPORT_FILE).write_text(f"{report.TITLE}\n\n{report.SMOKE_BANNER}")
  with pytest.raises(ValueError, match="pipeline check"):
    publish.publish(str(tmp_path / "smoke"), str(tmp_path / "out"))


def test_an_out_dir_that_would_destroy_the_study_or_other_files_is_refused(tmp_path):
  study = tmp_path / "study"
  _study(study)
  (tmp_path / "a_file").write_text("x")
  os.makedirs(tmp_path / "other")
  (tmp_path / "other" / "notes.txt").write_text("mine")
  cases = {"": "out='': give the directory",
           str(study): "must not be, contain or lie inside workdir",
           str(study / "published"): "must not be, contain or lie inside workdir",
           str(tmp_path): "must not be, contain or lie inside workdir",
           str(tmp_path / "a_file"): "exists and is not a directory",
           str(tmp_path / "other"): "a non-empty directory that is not a published report"}
  for out, message in cases.items():
    with pytest.raises(ValueError, match=re.escape(message)):
      publish.publish(str(study), out)
  assert (study / "runs" / "long_range_copy" / "r1" / "summary.json").is_file()
  assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
  assert (tmp_path / "a_file").read_text() == "x"


def test_the_script_refuses_bad_input_in_one_line_with_status_2(tmp_path):
  result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "publish_report.py"),
                           f"--workdir={tmp_path}/none", f"--out={tmp_path}/out"],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f"error: workdir={tmp_path}/none: no REPORT.md; run scripts/report.py first."]
