"""A finished study report, copied to a directory that goes into git (e.g. reports/cpu-standard).

    publish.publish("runs/study-standard", "reports/cpu-standard")

copies REPORT.md, every experiment's results.json and figures (PNG), and the learning rates
the study chose (learning_rates.json, where the scale tunes them), with the same relative
paths, so every link of REPORT.md resolves in the copy. The training runs (checkpoints,
metrics) stay out: the copy's REPORT.md opens with a line that says where it came from and
how to regenerate them. Refused (ValueError) when the report is missing, is a pipeline check,
has a failed analysis, or the copy would exceed `MAX_BYTES` (committed reports stay small).
"""

from __future__ import annotations

import glob
import os
import shutil

from seqresearch.study import report

MAX_BYTES = 1_000_000  # the whole published report: Markdown, JSON and PNGs
CHOSEN_RATES = "learning_rates.json"


def files(workdir: str) -> list[str]:
  """The report's files, relative to `workdir`: REPORT.md, */results.json, */*.png, and
  learning_rates.json where present.

  Raises:
    ValueError: no REPORT.md; a smoke report (its banner); an analysis that failed
      (`<experiment>/error.txt`).
  """
  path = os.path.join(workdir, report.REPORT_FILE)
  if not os.path.isfile(path):
    raise ValueError(f"workdir={workdir}: no {report.REPORT_FILE}; run scripts/report.py first.")
  with open(path) as f:
    text = f.read()
  if report.SMOKE_BANNER in text:
    raise ValueError(f"workdir={workdir}: a pipeline check (smoke scale) states no verdicts; "
                     "publish a quick or larger report.")
  errors = sorted(glob.glob(os.path.join(workdir, "*", "error.txt")))
  if errors:
    raise ValueError(f"workdir={workdir}: analyses failed ({', '.join(errors)}); fix and rerun "
                     "the report before publishing it.")
  found = [report.REPORT_FILE]
  for pattern in (os.path.join("*", report.RESULTS_FILE), os.path.join("*", "*.png")):
    found += sorted(os.path.relpath(p, workdir)
                    for p in glob.glob(os.path.join(workdir, pattern)))
  if os.path.isfile(os.path.join(workdir, CHOSEN_RATES)):
    found.append(CHOSEN_RATES)
  return found


def publish(workdir: str, out_dir: str) -> list[str]:
  """Copies the report of `workdir` to `out_dir` (replacing what the copy held before).

  Returns:
    The copied paths, relative to `out_dir`.

  Raises:
    ValueError: as `files`, or the files sum to more than MAX_BYTES (naming the largest).
  """
  names = files(workdir)
  sizes = {n: os.path.getsize(os.path.join(workdir, n)) for n in names}
  if sum(sizes.values()) > MAX_BYTES:
    largest = sorted(sizes, key=sizes.get, reverse=True)[:3]
    raise ValueError(f"workdir={workdir}: the report's files hold {sum(sizes.values())} bytes, "
                     f"more than {MAX_BYTES} (largest: " +
                     ", ".join(f"{n} {sizes[n]}" for n in largest) + ").")
  staging = out_dir.rstrip(os.sep) + ".tmp"
  shutil.rmtree(staging, ignore_errors=True)
  for name in names:
    os.makedirs(os.path.dirname(os.path.join(staging, name)), exist_ok=True)
    shutil.copyfile(os.path.join(workdir, name), os.path.join(staging, name))
  with open(os.path.join(staging, report.REPORT_FILE)) as f:
    text = f.read()
  title, _, rest = text.partition("\n")
  note = (f"> Published copy of `{os.path.join(workdir, report.REPORT_FILE)}`: its tables, "
          f"figures and results JSON are here; the training runs it names (`runs/...`: "
          f"configs, metrics, checkpoints) are not in git: the Reproduce command below "
          f"regenerates them.")
  with open(os.path.join(staging, report.REPORT_FILE), "w") as f:
    f.write(f"{title}\n\n{note}\n{rest}")
  shutil.rmtree(out_dir, ignore_errors=True)
  os.replace(staging, out_dir)
  return names
