"""A finished study report, copied to a directory for git (e.g. reports/cpu-standard).

    publish.publish("runs/study-standard", "reports/cpu-standard")

copies REPORT.md with exactly the files it links: the figures (PNG) it shows, the results.json
of each section it names, and the learning rates the study chose (learning_rates.json, where
the scale tunes them), at the same relative paths, so every link resolves in the copy. The
training runs (checkpoints, metrics) stay out: the copy's REPORT.md opens with a line that says
so and that its Reproduce command regenerates them. A partial report (a subset of the
experiments) keeps the banner that names what it leaves out.

The copy is made small: results JSON is written compactly with every float rounded to
`SIGNIFICANT_DIGITS` significant digits (the metrics are float32, which holds about 7; every
number the report prints has 4 or fewer) and without its "verdict" entry (REPORT.md holds
that text and the results key of each of its numbers: a tenth of the JSON, repeated), and
figures are re-encoded as palette PNGs: every model's colour exactly, plus `PNG_COLOURS`
chosen by median cut (line plots keep their look at a third of the bytes).

Refused (ValueError, one line) when the report is missing, is a pipeline check (smoke), lists
failed analyses, would exceed `MAX_BYTES`, or when `out_dir` is empty, a file, the study
directory, inside it or above it, or a non-empty directory that is not a published copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np

from seqresearch.models import registry
from seqresearch.study import report
from seqresearch.study import tuning

MAX_BYTES = 1_000_000  # the whole published report: Markdown, JSON and PNGs, as copied
PNG_COLOURS = 32
SIGNIFICANT_DIGITS = 7
NOTE = ("> Published copy of a study report: its tables, figures and results JSON (floats to "
        "7 significant digits; each verdict is in this file, not repeated there) are here; the "
        "training runs it names (`runs/...`: configs, metrics, checkpoints) are not in git: "
        "the Reproduce command below regenerates them.")


def files(workdir: str) -> list[str]:
  """REPORT.md and the files it links, relative to `workdir`.

  Raises:
    ValueError: no REPORT.md; a smoke report (its banner); failed analyses listed in it; a
      linked file that does not exist.
  """
  path = os.path.join(workdir, report.REPORT_FILE)
  if not os.path.isfile(path):
    raise ValueError(f"workdir={workdir}: no {report.REPORT_FILE}; run scripts/report.py first.")
  with open(path) as f:
    text = f.read()
  if report.SMOKE_BANNER in text:
    raise ValueError(f"workdir={workdir}: a pipeline check (smoke scale) states no verdicts; "
                     "publish a quick or larger report.")
  if report.FAILED_ANALYSES in text:
    raise ValueError(f"workdir={workdir}: its {report.REPORT_FILE} lists failed analyses; fix "
                     "them and rerun the report before publishing it.")
  figures = re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", text)
  results = re.findall(rf"`([\w-]+/{re.escape(report.RESULTS_FILE)})`", text)
  linked = list(dict.fromkeys(figures + results))
  if os.path.isfile(os.path.join(workdir, tuning.FILE)):
    linked.append(tuning.FILE)
  absent = [n for n in linked if not os.path.isfile(os.path.join(workdir, n))]
  if absent:
    raise ValueError(f"workdir={workdir}: {report.REPORT_FILE} links files that do not exist: "
                     f"{', '.join(absent)}; rerun the report.")
  return [report.REPORT_FILE] + linked


def _check_out_dir(workdir: str, out_dir: str) -> None:
  if not out_dir:
    raise ValueError("out='': give the directory of the published copy, e.g. "
                     "reports/cpu-standard.")
  real_out, real_work = os.path.realpath(out_dir), os.path.realpath(workdir)
  if os.path.lexists(out_dir) and (os.path.islink(out_dir) or not os.path.isdir(out_dir)):
    raise ValueError(f"out={out_dir}: exists and is not a directory; give a new directory or "
                     "an earlier published copy.")
  if (real_out == real_work or real_out.startswith(real_work + os.sep)
      or real_work.startswith(real_out + os.sep)):
    raise ValueError(f"out={out_dir}: must not be, contain or lie inside workdir={workdir}.")
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    previous = os.path.join(out_dir, report.REPORT_FILE)
    text = ""
    if os.path.isfile(previous):
      with open(previous) as f:
        text = f.read()
    if NOTE not in text:
      raise ValueError(f"out={out_dir}: a non-empty directory that is not a published report; "
                       "give a new directory or an earlier published copy (it is replaced).")


def _rounded(value):
  """`value` with every float rounded to SIGNIFICANT_DIGITS significant digits."""
  if isinstance(value, float):
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
  if isinstance(value, list):
    return [_rounded(v) for v in value]
  if isinstance(value, dict):
    return {k: _rounded(v) for k, v in value.items()}
  return value


def _fixed_colours() -> list[tuple[int, int, int]]:
  """Colours every published figure keeps exactly: each model's (one per model in every
  figure), black and white. A palette chosen by median cut alone merged close ones (minGRU's
  olive and local attention's orange became one orange in the standard report's figures)."""
  from matplotlib import colors  # pylint: disable=g-import-not-at-top
  names = [e.color for e in registry.MODELS.values()] + ["black", "white"]
  return [tuple(round(255 * c) for c in colors.to_rgb(n)) for n in dict.fromkeys(names)]


def _copy(source: str, dest: str) -> None:
  """Copies one file: JSON compactly (same values, no verdict), PNG as a palette image, others
  as is."""
  if source.endswith(".json"):
    with open(source) as f:
      data = json.load(f)
    if isinstance(data, dict):
      data.pop("verdict", None)  # REPORT.md's text, with the key of each number it cites
    with open(dest, "w") as f:
      json.dump(_rounded(data), f, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
  elif source.endswith(".png"):
    from PIL import Image  # pylint: disable=g-import-not-at-top  (matplotlib's dependency)
    with Image.open(source) as image:
      rgb = image.convert("RGB")
      fixed = _fixed_colours()
      adaptive = rgb.quantize(colors=PNG_COLOURS, dither=Image.Dither.NONE,
                              method=Image.Quantize.MEDIANCUT).getpalette()[:3 * PNG_COLOURS]
      palette = Image.new("P", (1, 1))
      palette.putpalette([c for colour in fixed for c in colour] + adaptive)
      index = np.array(rgb.quantize(palette=palette, dither=Image.Dither.NONE))
      # Pillow matches colours at reduced precision, so a model's exact colour may land on a
      # median-cut neighbour: pixels of a fixed colour get its own entry.
      pixels = np.asarray(rgb)
      for i, colour in enumerate(fixed):
        index[(pixels == colour).all(axis=-1)] = i
      out = Image.frombytes("P", rgb.size, index.astype(np.uint8).tobytes())
      out.putpalette(palette.getpalette())
      out.save(dest, optimize=True)
  else:
    shutil.copyfile(source, dest)


def publish(workdir: str, out_dir: str) -> list[str]:
  """Copies the report of `workdir` to `out_dir` (replacing an earlier published copy there).

  Returns:
    The copied paths, relative to `out_dir`.

  Raises:
    ValueError: as `files`; `out_dir` refused (see the module docstring); the files sum to
      more than MAX_BYTES (naming the largest).
  """
  names = files(workdir)
  _check_out_dir(workdir, out_dir)
  staging = os.path.normpath(out_dir) + ".tmp"
  if os.path.lexists(staging):
    shutil.rmtree(staging)
  try:
    for name in names:
      os.makedirs(os.path.dirname(os.path.join(staging, name)), exist_ok=True)
      _copy(os.path.join(workdir, name), os.path.join(staging, name))
    with open(os.path.join(staging, report.REPORT_FILE)) as f:
      title, _, rest = f.read().partition("\n")
    with open(os.path.join(staging, report.REPORT_FILE), "w") as f:
      f.write(f"{title}\n\n{NOTE}\n{rest}")
    sizes = {n: os.path.getsize(os.path.join(staging, n)) for n in names}
    if sum(sizes.values()) > MAX_BYTES:
      largest = sorted(sizes, key=sizes.get, reverse=True)[:3]
      raise ValueError(f"workdir={workdir}: the report's files hold {sum(sizes.values())} "
                       f"bytes as published, more than {MAX_BYTES} (largest: " +
                       ", ".join(f"{n} {sizes[n]}" for n in largest) + ").")
    if os.path.isdir(out_dir):
      shutil.rmtree(out_dir)
    os.replace(staging, out_dir)
  finally:
    if os.path.lexists(staging):
      shutil.rmtree(staging)
  return names
