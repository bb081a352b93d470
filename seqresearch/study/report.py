"""The study report: train what the experiments need, analyse each, write REPORT.md.

    study = runner.Study("quick", "runs/study-quick", config=configs.study,
                         experiments={name: module, ...}, parallel=2)
    report.write_report(study)   # -> runs/study-quick/REPORT.md

At a scale that only checks the pipeline (smoke), REPORT.md opens with a banner saying so and
prints no verdicts: untrained models decide nothing.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import multiprocessing
import os
import platform
import time
import traceback
from collections.abc import Sequence
from typing import Any

import jax

from seqresearch import workdir as workdir_lib
from seqresearch.study import stats
from seqresearch.study import verdicts
from seqresearch.study.runner import Study

RESULTS_FILE = "results.json"
REPORT_FILE = "REPORT.md"
# How the report was last written by `write_report` (when, where, wall and training seconds,
# which sections), so that a restated REPORT.md still names the wall time of what it restates.
TIMING_FILE = "report_timing.json"
FAILED_ANALYSES = "**Analyses that failed**"  # the line that names them, when any failed
TITLE = "# Why attention beats RNNs/LSTMs — measured"
SMOKE_BANNER = ("> **Pipeline check only.** This scale trains tiny models for tens of steps to "
                "check that every run, analysis, figure and table is produced. Its numbers say "
                "nothing about the models, so no verdict is stated; run `--scale=quick` or "
                "larger for verdicts.")


def run_experiment(study: Study, name: str) -> dict[str, Any]:
  """Analyses one experiment (its sweeps must have run); writes results.json and figures."""
  module = study.experiments[name]
  out_dir = os.path.join(study.workdir, name)
  os.makedirs(out_dir, exist_ok=True)
  started = time.time()
  results = stats.json_ready(module.run(study))
  results["figures"] = [study.relpath(p) for p in module.figures(results, out_dir)]
  results["verdict"] = module.verdict(results).to_json()
  results["analysis_seconds"] = time.time() - started
  stats.write_results(os.path.join(out_dir, RESULTS_FILE), results)
  if os.path.exists(error := os.path.join(out_dir, "error.txt")):
    os.remove(error)  # an earlier failure, now fixed
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


def environment() -> str:
  """The machine and versions, in one line (named once, at the top of the report)."""
  device = jax.devices()[0]
  return (f"{device.platform} ({device.device_kind}, {jax.device_count()} device(s), "
          f"{os.cpu_count()} CPU cores), python {platform.python_version()}, "
          f"jax {jax.__version__}")


def write_report(study: Study, names: Sequence[str] | None = None,
                 omitted: Sequence[str] = ()) -> tuple[str, list[str]]:
  """Trains what the experiments need (reusing finished runs), analyses, writes REPORT.md.

  An experiment whose analysis raises does not stop the others: its traceback goes to
  `<experiment>/error.txt` and its section says so.

  Args:
    study: the scale, directory, config and experiments.
    names: the experiments to run (default all of `study.experiments`), in report order.
    omitted: the study's experiments left out of this report (a subset run): named at the
      top of REPORT.md, so that a partial report never reads as the whole study.

  Returns:
    (path of REPORT.md, names of the experiments that failed).
  """
  started = time.time()
  names = [n for n in study.experiments if names is None or n in names]
  modules = {name: study.experiments[name] for name in names}
  sweeps = [s for m in modules.values() for s in m.SWEEPS]
  print(f"Training the runs of {len(set(sweeps))} sweeps ({study.scale} scale) in "
        f"{study.workdir}/runs", flush=True)
  study.train(sweeps)
  train_seconds = time.time() - started
  # Analyses that time things run alone, after the others; those run `parallel` at a time in
  # fresh processes (each experiment is mostly single-threaded compilation).
  timed = [name for name in names if getattr(modules[name], "TIMED", False)]
  others = [name for name in names if name not in timed]
  if study.parallel > 1 and len(others) > 1:
    context = multiprocessing.get_context("spawn")  # never fork a process that holds JAX
    with concurrent.futures.ProcessPoolExecutor(min(study.parallel, len(others)),
                                                mp_context=context) as pool:
      futures = {name: pool.submit(_analyse, study, name) for name in others}
      outcomes = {name: future.result() for name, future in futures.items()}
  else:
    outcomes = {name: _analyse(study, name) for name in others}
  outcomes.update({name: _analyse(study, name) for name in timed})
  results = {name: outcomes[name] for name in names if outcomes[name] is not None}
  failed = [name for name in names if outcomes[name] is None]
  timing = {"generated": f"{datetime.datetime.now():%Y-%m-%d %H:%M}",
            "environment": environment(), "wall_seconds": time.time() - started,
            "train_seconds": train_seconds, "experiments": list(modules)}
  workdir_lib.write_json(os.path.join(study.workdir, TIMING_FILE), timing)
  text = render(study, modules, results, train_seconds, timing["wall_seconds"], omitted)
  path = os.path.join(study.workdir, REPORT_FILE)
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
  return path, failed


def restate_report(study: Study, omitted: Sequence[str] = ()) -> str:
  """REPORT.md again from each experiment's saved results.json, its verdict derived anew by
  the current code: nothing is trained, analysed or timed, and the figures are those saved.
  An experiment may define `derive(results) -> results`, recomputing what is a function of
  its saved measurements alone (e.g. parallelism's comparisons); it runs first.

  For a change to a verdict's rule or wording, without rerunning an analysis (the timed
  parallelism section would measure another machine state).

  Returns:
    the path of REPORT.md.

  Raises:
    ValueError: an experiment without a saved results.json, or one that is not valid JSON
      (the file is named), before anything is written.
  """
  started = time.time()
  modules = dict(study.experiments)
  paths = {name: os.path.join(study.workdir, name, RESULTS_FILE) for name in modules}
  missing = [p for p in paths.values() if not os.path.exists(p)]
  if missing:
    raise ValueError(f"--restate: no saved results for {', '.join(missing)}; run the report "
                     "without --restate first.")
  # A results.json older than a failed analysis is stale: never restated as current.
  failed = [os.path.join(study.workdir, n, "error.txt") for n in modules
            if os.path.exists(os.path.join(study.workdir, n, "error.txt"))]
  if failed:
    raise ValueError(f"--restate: the last analysis failed ({', '.join(failed)}), so its saved "
                     "results are stale; run the report without --restate.")
  saved_all = {name: workdir_lib.read_json(p) for name, p in paths.items()}
  results = {}
  for name, module in modules.items():
    saved, path = saved_all[name], paths[name]
    if hasattr(module, "derive"):  # quantities computed from the saved measurements alone
      saved = stats.json_ready(module.derive(saved))
    if not study.smoke:
      saved["verdict"] = module.verdict(saved).to_json()
      stats.write_results(path, saved)
    results[name] = saved
  text = render(study, modules, results, 0.0, time.time() - started, omitted, restated=True,
                written=_written_timing(study, list(modules)))
  path = os.path.join(study.workdir, REPORT_FILE)
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
  return path


_TIMING_FIELDS = {"generated": str, "environment": str, "wall_seconds": (int, float),
                  "train_seconds": (int, float), "experiments": list}


def _written_timing(study: Study, names: list[str]) -> dict[str, Any]:
  """The saved timing of the report's last writing (`write_report`), or {}: none saved (a
  workdir from before the file existed), or saved for other sections (a later partial run
  replaced it). A damaged file is named in a warning and not used: it only adds a line to the
  header."""
  path = os.path.join(study.workdir, TIMING_FILE)
  if not os.path.exists(path):
    return {}
  try:
    timing = workdir_lib.read_json(path)
    if not (isinstance(timing, dict) and all(isinstance(timing.get(k), kind)
                                             for k, kind in _TIMING_FIELDS.items())):
      raise ValueError(f"{path} does not hold {sorted(_TIMING_FIELDS)}; the file is damaged.")
  except ValueError as e:
    print(f"warning: {e} The header leaves out the wall time.", flush=True)
    return {}
  return timing if timing["experiments"] == names else {}


def render(study: Study, modules: dict[str, Any], results: dict[str, dict[str, Any]],
           train_seconds: float, total_seconds: float, omitted: Sequence[str] = (),
           restated: bool = False, written: dict[str, Any] | None = None) -> str:
  """REPORT.md from the experiments' results (no verdicts at a pipeline-check scale); the
  experiments in `omitted` are named as not in this report; `restated`: the verdicts were
  derived anew from saved results (`restate_report`), which the header says; `written`: the
  timing of the report's last writing (`TIMING_FILE`), which a restated header quotes."""
  out = [TITLE, ""]
  if study.smoke:
    out += [SMOKE_BANNER, ""]
  now = f"{datetime.datetime.now():%Y-%m-%d %H:%M}"
  if restated:
    analysis = sum(r.get("analysis_seconds") or 0.0 for r in results.values())
    timing = (f"Scale `{study.scale}`, verdicts restated {now} on {environment()} from the "
              f"saved results of each section (`--restate`: nothing trained, analysed or "
              f"timed again; the analyses as saved took {analysis:.0f} s summed over the "
              f"sections, which run side by side).")
    if written:
      timing += (f" Before restating: written {written['generated']} on "
                 f"{written['environment']}, wall time {written['wall_seconds']:.0f} s (training "
                 f"{written['train_seconds']:.0f} s).")
  else:
    timing = (f"Scale `{study.scale}`, generated {now} on {environment()}. Wall time "
              f"{total_seconds:.0f} s (training {train_seconds:.0f} s; finished runs are "
              "reused when the report is rerun).")
  out += [
      timing,
      "",
      f"Reproduce: `python scripts/report.py --scale={study.scale} "
      f"--workdir={study.workdir}`. Every number below is read from the `results.json` "
      "named next to it (paths relative to this file); training runs live in "
      "`runs/<sweep>/<run>/` (config.json, metrics.jsonl, summary.json, checkpoints).",
      "",
  ]
  if omitted:
    out += [f"**A partial report.** Not in it: {', '.join(omitted)} (this report was run with "
            f"`--experiments={','.join(modules)}`); their questions are not answered here, and "
            f"Table 1 and the list of contradictions cover only the sections below.", ""]
  missing = [name for name in modules if name not in results]
  if missing:
    out += [f"{FAILED_ANALYSES} (traceback in `<experiment>/error.txt`): " +
            ", ".join(missing), ""]
  if not study.smoke:
    contradictions = [(name, c) for name, r in results.items()
                      for c in r["verdict"]["contradictions"]]
    out += ["## Results that contradict the essay", ""]
    out += ([f"- ({name}) {c}" for name, c in contradictions] if contradictions
            else ["None at this scale."])
    out.append("")
  table1 = [m for name, m in modules.items() if name in results and hasattr(m, "table1")]
  if table1:  # Table 1 counts FLOPs and depths: the experiment that defines table1()
    name = next(n for n, m in modules.items() if m is table1[0])
    out += ["## Table 1, measured", "", table1[0].table1(results[name], results), ""]
  for i, (name, module) in enumerate(modules.items(), start=1):
    out += [f"## {i}. {module.TITLE}", "", f"*Claim tested.* {module.CLAIM}", ""]
    if name not in results:
      out += [f"The analysis failed: see `{name}/error.txt`.", ""]
      continue
    out += _section(study, name, module, results[name])
  return "\n".join(out)


def _section(study: Study, name: str, module: Any, r: dict[str, Any]) -> list[str]:
  source = f"{name}/{RESULTS_FILE}"
  out = []
  # Each run is named once, numbered; the sources of the verdict's numbers cite the number.
  number = {p: i for i, p in enumerate(r.get("runs") or [], start=1)}
  if r.get("runs"):
    out += ["*Runs* ({}): ".format(len(r["runs"])) +
            ", ".join(f"[{number[p]}] `{p}`" for p in r["runs"]), ""]
  if r.get("failed_runs"):
    out += ["**Failed runs** (see their error.txt): " +
            ", ".join(f"`{p}`" for p in r["failed_runs"]), ""]
  out += [module.tables(r), "", f"Source of the tables: `{source}`.", ""]
  out += [f"![{name} {j}]({fig})" for j, fig in enumerate(r["figures"], start=1)]
  if study.smoke:
    return out + ["", "*No verdict at this scale (pipeline check only).*", ""]
  out += ["", f"**Verdict.** {r['verdict']['text']}", ""]
  out.append(f"<details><summary>Where each number of the verdict comes from "
             f"(`{source}`)</summary>\n")
  out += [f"- {c['text']}: `{c['path']}`" + _run_reference(verdicts.run_of(r, c["path"]), number)
          for c in r["verdict"]["cited"]]
  return out + ["", "</details>", ""]


def _run_reference(run: str | None, number: dict[str, int]) -> str:
  """' (run [3])' for a run of the section's numbered list, ' (run `path`)' for another."""
  if run is None:
    return ""
  return f" (run [{number[run]}])" if run in number else f" (run `{run}`)"
