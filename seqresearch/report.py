"""The study report: run the experiments at a scale, write REPORT.md with figures and verdicts.

    study = report.Study(scale="quick", workdir="runs/study-quick", parallel=2)
    report.write_report(study)   # -> runs/study-quick/REPORT.md

Layout of a study workdir:

  runs/<sweep>/<run>/          training runs (the sweep machinery: finished runs are reused)
  <experiment>/results.json    every number an experiment reports, with the runs it came from
  <experiment>/*.png           its figures
  REPORT.md                    the sections, tables, the measured Table 1 and the verdicts

An experiment is a module `experiments/<name>.py` (one research question) with:

  TITLE, CLAIM: str               the question and what the essay claims
  SWEEPS: tuple[str, ...]         its training runs: sweep names of configs/study.py
  run(study) -> dict              the analysis: JSON-ready results (sweeps already trained)
  figures(results, out_dir)       -> [PNG paths]
  tables(results) -> str          markdown
  verdict(results) -> Verdict     a paragraph computed from the numbers in `results`
  TIMED = True (optional)         it measures wall time: analysed alone, after the others

Verdicts never hold a hand-typed number: `Verdict.number(path)` formats the value found at
`path` in the results and records (path, value, text), so a test can check that every number
of the prose equals the JSON it came from.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import time
import traceback
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from seqresearch import configlib
from seqresearch import sweep
from seqresearch import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY_CONFIG = os.path.join(ROOT, "configs", "study.py")
EXPERIMENTS_DIR = os.path.join(ROOT, "experiments")
EXPERIMENTS = ("long_range", "extrapolation", "gradient_path", "attention_maps", "parallelism",
               "complexity")
SCALES = ("smoke", "quick", "full")
RESULTS_FILE = "results.json"
# How the report names the variants of configs/study.py.
LABELS = {
    "rnn": "Elman RNN", "lstm": "LSTM (forget bias 1)", "lstm_fb0": "LSTM (forget bias 0)",
    "lstm_chrono": "LSTM (chrono init)", "gru": "GRU", "transformer": "Transformer",
    "transformer_learned": "Transformer (learned positions)",
    "transformer_nope": "Transformer (no positions)",
}
REPORT_FILE = "REPORT.md"


def load_experiment(name: str):
  """The module experiments/<name>.py (loaded by path, like a config file)."""
  if name not in EXPERIMENTS:
    raise ValueError(f"experiment {name!r}: must be one of {EXPERIMENTS}.")
  spec = importlib.util.spec_from_file_location(f"experiments.{name}",
                                                os.path.join(EXPERIMENTS_DIR, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@dataclasses.dataclass
class Study:
  """One scale of the study in one directory.

  Attributes:
    scale: 'smoke', 'quick' or 'full' (configs/study.py).
    workdir: the study directory.
    parallel: training processes at a time.
  """

  scale: str
  workdir: str
  parallel: int = 1

  def __post_init__(self) -> None:
    if self.scale not in SCALES:
      raise ValueError(f"scale={self.scale!r}: must be one of {SCALES}.")
    module = sweep.load_config_module(STUDY_CONFIG)
    self.settings = module.get_study(self.scale)  # the scale's grids and analysis settings
    self.variants = module.VARIANTS

  def sweep_dir(self, name: str) -> str:
    return os.path.join(self.workdir, "runs", name)

  def runs(self, name: str) -> list[sweep.Run]:
    """The members of sweep `name` at this scale (not run; see `train`)."""
    return sweep.expand(STUDY_CONFIG, f"sweep={name},scale={self.scale}", self.sweep_dir(name))

  def train(self, names: Sequence[str]) -> list[dict[str, Any]]:
    """Runs the unfinished members of the sweeps `names` (all at once, `parallel` at a time).

    Finished runs are skipped; a failed run is recorded in its error.txt and the others go
    on. Writes each sweep's summary.{json,csv} (mean and 95% CI over seeds).
    """
    by_name = {name: self.runs(name) for name in dict.fromkeys(names)}
    stale = [f"{run.workdir}: {'; '.join(diff[:3])}" for runs in by_name.values()
             for run in runs if run.finished and (diff := config_changes(run))]
    if stale:
      # A finished run is skipped by the sweep, so a changed setting would be silently ignored.
      raise ValueError("finished runs were trained with other settings than configs/study.py "
                       "now gives (delete them or use another workdir): " + " | ".join(stale))
    todo = [run for runs in by_name.values() for run in runs if not run.finished]
    # Longest first, so that `parallel` workers finish together (Transformers on the longest
    # sequences dominate; the sweep entries carry the task lengths).
    todo.sort(key=_cost_rank, reverse=True)
    results = sweep.run_local(todo, self.parallel) if todo else []
    for name, runs in by_name.items():
      if any(run.finished for run in runs):
        sweep.summarize(runs, self.sweep_dir(name))
    return results

  def variant(self, run: sweep.Run) -> str:
    """The name in configs/study.py VARIANTS whose fields the run has (the most specific)."""
    fields = {"model": run.config_arg.split(":", 1)[1].split(",")[0], **dict(run.overrides)}
    matches = [(len(v), name) for name, v in self.variants.items()
               if all(fields.get(k) == value for k, value in v.items())]
    if not matches:
      raise ValueError(f"run {run.name} matches no variant of {STUDY_CONFIG}.")
    return max(matches)[1]

  def relpath(self, path: str) -> str:
    """`path` relative to the study directory (how REPORT.md names files)."""
    return os.path.relpath(path, self.workdir)


def label(variant: str) -> str:
  return LABELS.get(variant, variant)


def is_recurrent(variant: str) -> bool:
  return not variant.startswith("transformer")


def _cost_rank(run: sweep.Run) -> tuple[bool, int]:
  fields = dict(run.overrides)
  length = fields.get("task.max_delay", fields.get("task.max_distance", 0))
  return ":transformer" in run.config_arg, int(length)


def config_changes(run: sweep.Run) -> list[str]:
  """How the config in the run's workdir differs from the one its sweep entry builds now."""
  path, arg = run.config_arg.split(":", 1)
  config = sweep.load_config_module(path).get_config(arg)
  for key, value in run.overrides:
    configlib.apply_dotted(config, key, str(value).lower() if isinstance(value, bool)
                           else str(value))
  expected = json.loads(config.to_json_best_effort())
  found = _flatten(workdir_lib.read_json(os.path.join(run.workdir, workdir_lib.CONFIG_FILE)))
  return [f"{key}: {found.get(key)!r} there, {value!r} now"
          for key, value in _flatten(expected).items()
          if key.split(".")[0] not in configlib.PRESENTATION_FIELDS and found.get(key) != value]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def run_summary(run: sweep.Run) -> dict[str, Any]:
  return workdir_lib.read_json(os.path.join(run.workdir, workdir_lib.SUMMARY_FILE))


def failed_runs(study: Study, runs: Sequence[sweep.Run]) -> list[str]:
  """Run directories (relative to the study) that did not finish."""
  return [study.relpath(run.workdir) for run in runs if not run.finished]


# ---------------------------------------------------------------- numbers and verdicts


def lookup(results: Any, path: str) -> Any:
  """results['a']['b'][2] for path 'a.b.2' (dict keys or list indices)."""
  node = results
  for part in path.split("."):
    if isinstance(node, list):
      node = node[int(part)]
    elif isinstance(node, dict) and part in node:
      node = node[part]
    else:
      raise KeyError(f"{path!r}: no {part!r} in the results.")
  return node


def run_of(results: Any, path: str) -> str | None:
  """The run directory recorded nearest above `path` in the results (a 'run' key), if any."""
  parts = path.split(".")
  for end in range(len(parts), 0, -1):
    try:
      node = lookup(results, ".".join(parts[:end]))
    except (KeyError, IndexError, ValueError):
      continue
    if isinstance(node, dict) and isinstance(node.get("run"), str):
      return node["run"]
  return None


def fmt(value: float, spec: str = ".2f") -> str:
  """A number as the report prints it ('n/a' for NaN: e.g. a CI of a single seed)."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "n/a"
  text = format(value, spec)
  # "-0.00": a tiny negative number rounded to zero is printed as zero.
  if text.startswith("-") and not any(c in "123456789" for c in text):
    text = text[1:]
  return text


class Verdict:
  """A paragraph whose every number is read from the results, with its path recorded."""

  def __init__(self, results: dict[str, Any]):
    self.results = results
    self.sentences: list[str] = []
    self.cited: list[dict[str, Any]] = []
    self.contradictions: list[str] = []

  def number(self, path: str, spec: str = ".2f") -> str:
    """The value at `path`, formatted with `spec`; recorded for tracing."""
    value = lookup(self.results, path)
    text = fmt(value, spec)
    self.cited.append({"path": path, "value": value, "spec": spec, "text": text})
    return text

  def pm(self, path: str, spec: str = ".2f") -> str:
    """'mean ± ci95' of the stat at `path` (a dict with mean and ci95)."""
    return f"{self.number(path + '.mean', spec)} ± {self.number(path + '.ci95', spec)}"

  def say(self, sentence: str) -> None:
    self.sentences.append(sentence)

  def contradicts(self, sentence: str) -> None:
    """A finding against the essay: said in the paragraph and listed in the report summary."""
    self.sentences.append(sentence)
    self.contradictions.append(sentence)

  @property
  def text(self) -> str:
    return " ".join(self.sentences)

  def to_json(self) -> dict[str, Any]:
    return {"text": self.text, "cited": self.cited, "contradictions": self.contradictions}


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
  """'higher', 'lower' or 'indistinguishable': a against b by their 95% intervals.

  Non-overlapping intervals count as a difference; with a single seed (no interval) the
  means decide.
  """
  ha, hb = (np.nan_to_num(x["ci95"]) for x in (a, b))
  if a["mean"] - ha > b["mean"] + hb:
    return "higher"
  if a["mean"] + ha < b["mean"] - hb:
    return "lower"
  return "indistinguishable"


# ---------------------------------------------------------------- figures and tables


def figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6):
  """(fig, axes list) on matplotlib's Agg canvas: no pyplot state, no display."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width * ncols, height * nrows))
  FigureCanvasAgg(fig)
  return fig, [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]


def save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def pm_cell(s: dict[str, Any] | None, spec: str = ".2f") -> str:
  """'0.31 ± 0.04' for a stat dict; '–' where there is none."""
  if not s:
    return "–"
  return f"{fmt(s['mean'], spec)} ± {fmt(s['ci95'], spec)}"


# ---------------------------------------------------------------- the report


def run_experiment(study: Study, name: str) -> dict[str, Any]:
  """Analyses one experiment (its sweeps must have run); writes results.json and figures."""
  module = load_experiment(name)
  out_dir = os.path.join(study.workdir, name)
  os.makedirs(out_dir, exist_ok=True)
  started = time.time()
  results = module.run(study)
  results["figures"] = [study.relpath(p) for p in module.figures(results, out_dir)]
  results["verdict"] = module.verdict(results).to_json()
  results["analysis_seconds"] = time.time() - started
  workdir_lib.write_json(os.path.join(out_dir, RESULTS_FILE), results)
  return results


def _analyse(study: Study, name: str) -> dict[str, Any] | None:
  """`run_experiment`, or None after writing the traceback to <experiment>/error.txt."""
  print(f"Analysing {name}", flush=True)
  try:
    return run_experiment(study, name)
  except Exception:  # pylint: disable=broad-except  (reported; the other experiments go on)
    error = traceback.format_exc()
    os.makedirs(os.path.join(study.workdir, name), exist_ok=True)
    with open(os.path.join(study.workdir, name, "error.txt"), "w") as f:
      f.write(error)
    print(error, flush=True)
    return None


def _environment() -> str:
  device = jax.devices()[0]
  return (f"{device.platform} ({device.device_kind}, {jax.device_count()} device(s), "
          f"{os.cpu_count()} CPU cores), python {platform.python_version()}, "
          f"jax {jax.__version__}")


def write_report(study: Study, experiments: Sequence[str] = EXPERIMENTS) -> tuple[str, list[str]]:
  """Trains what the experiments need (reusing finished runs), analyses, writes REPORT.md.

  An experiment whose analysis raises does not stop the others: its traceback goes to
  `<experiment>/error.txt` and its section says so.

  Returns:
    (path of REPORT.md, names of the experiments that failed).
  """
  started = time.time()
  modules = {name: load_experiment(name) for name in experiments}
  sweeps = [s for m in modules.values() for s in m.SWEEPS]
  print(f"Training the runs of {len(set(sweeps))} sweeps ({study.scale} scale) in "
        f"{study.workdir}/runs", flush=True)
  study.train(sweeps)
  train_seconds = time.time() - started
  # Analyses that time things run alone, after the others; those run `parallel` at a time in
  # fresh processes (each experiment is mostly single-threaded compilation).
  timed = [name for name in experiments if getattr(modules[name], "TIMED", False)]
  others = [name for name in experiments if name not in timed]
  outcomes = {}
  if study.parallel > 1 and len(others) > 1:
    context = multiprocessing.get_context("spawn")  # never fork a process that holds JAX
    with concurrent.futures.ProcessPoolExecutor(min(study.parallel, len(others)),
                                                mp_context=context) as pool:
      futures = {name: pool.submit(_analyse, study, name) for name in others}
      outcomes = {name: future.result() for name, future in futures.items()}
  else:
    outcomes = {name: _analyse(study, name) for name in others}
  outcomes.update({name: _analyse(study, name) for name in timed})
  results = {name: outcomes[name] for name in experiments if outcomes[name] is not None}
  failed = [name for name in experiments if outcomes[name] is None]
  text = render(study, modules, results, train_seconds, time.time() - started)
  path = os.path.join(study.workdir, REPORT_FILE)
  with open(path, "w") as f:
    f.write(text)
  return path, failed


def render(study: Study, modules: dict[str, Any], results: dict[str, dict[str, Any]],
           train_seconds: float, total_seconds: float) -> str:
  """REPORT.md from the experiments' results."""
  out = [
      "# Why attention beats RNNs/LSTMs — measured",
      "",
      f"Scale `{study.scale}`, generated {datetime.datetime.now():%Y-%m-%d %H:%M} on "
      f"{_environment()}. Wall time {total_seconds:.0f} s (training {train_seconds:.0f} s; "
      "finished runs are reused when the report is rerun).",
      "",
      f"Reproduce: `python scripts/report.py --scale={study.scale} "
      f"--workdir={study.workdir}`. Every number below is read from the `results.json` "
      "named next to it (paths relative to this file); training runs live in "
      "`runs/<sweep>/<run>/` (config.json, metrics.jsonl, summary.json, checkpoints).",
      "",
  ]
  contradictions = [(name, c) for name, r in results.items()
                    for c in r["verdict"]["contradictions"]]
  missing = [name for name in modules if name not in results]
  if missing:
    out += ["**Analyses that failed** (traceback in `<experiment>/error.txt`): " +
            ", ".join(missing), ""]
  out += ["## Results that contradict the essay", ""]
  out += ([f"- ({name}) {c}" for name, c in contradictions] if contradictions
          else ["None at this scale."])
  out.append("")
  if "complexity" in results:  # Table 1 counts FLOPs and depths: the complexity experiment
    out += ["## Table 1, measured", "",
            modules["complexity"].table1(results["complexity"], results.get("parallelism")),
            ""]
  for i, (name, module) in enumerate(modules.items(), start=1):
    out += [f"## {i}. {module.TITLE}", "", f"*Claim tested.* {module.CLAIM}", ""]
    if name not in results:
      out += [f"The analysis failed: see `{name}/error.txt`.", ""]
      continue
    r = results[name]
    source = f"{name}/{RESULTS_FILE}"
    if r.get("runs"):
      out.append(f"*Runs* ({len(r['runs'])}): " + ", ".join(f"`{p}`" for p in r["runs"]))
      out.append("")
    if r.get("failed_runs"):
      out.append("**Failed runs** (see their error.txt): " +
                 ", ".join(f"`{p}`" for p in r["failed_runs"]))
      out.append("")
    out += [module.tables(r), "", f"Source of the tables: `{source}`.", ""]
    out += [f"![{name} {j}]({fig})" for j, fig in enumerate(r["figures"], start=1)]
    out += ["", f"**Verdict.** {r['verdict']['text']}", ""]
    out.append(f"<details><summary>Where each number of the verdict comes from "
               f"(`{source}`)</summary>\n")
    out += [f"- {c['text']}: `{c['path']}`" + (f" (run `{run}`)" if (run := run_of(r, c["path"]))
                                               else "") for c in r["verdict"]["cited"]]
    out += ["", "</details>", ""]
  return "\n".join(out)
