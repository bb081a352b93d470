"""Sweeps: expand a config file's `get_sweep(arg)` into runs, run them, summarise across seeds.

A config file declares its sweep next to `get_config`:

  def get_sweep(arg) -> list[dict]:   # one dict of overrides per run
    return [{"model": m, "task.max_delay": d, "seed": s} for m in ... for d in ... for s in ...]

`model` picks the model of the config argument; every other key is a dotted config field.
Each run gets its own workdir under the sweep directory, named from its overrides, and is run
as `scripts/train.py` in a subprocess (isolation: a crash or an OOM of one run does not stop the
sweep). Finished runs (summary.json present) are skipped; unfinished ones resume from their
checkpoints; failures are recorded in `<run>/error.txt` and the sweep goes on.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

from seqresearch import build
from seqresearch import configlib
from seqresearch import models
from seqresearch import workdir as workdir_lib
from seqresearch.analysis import fits

SUMMARY_METRICS = ("accuracy", "sequence_accuracy", "loss")


@dataclasses.dataclass(frozen=True)
class Run:
  """One member of a sweep."""

  name: str  # Directory name under the sweep workdir, readable from the overrides.
  config_arg: str  # `path:arg` for --config.
  overrides: tuple[tuple[str, Any], ...]  # Dotted fields (no `model`), as --config.<k>=<v>.
  workdir: str

  def command(self) -> list[str]:
    flags = [f"--config.{k}={_flag_value(v)}" for k, v in self.overrides]
    return [sys.executable, "-m", "seqresearch.train_cli", f"--config={self.config_arg}",
            f"--workdir={self.workdir}", "--config.progress_bar=false", *flags]

  @property
  def finished(self) -> bool:
    return os.path.exists(os.path.join(self.workdir, workdir_lib.SUMMARY_FILE))


def _flag_value(value: Any) -> str:
  return str(value).lower() if isinstance(value, bool) else str(value)


def load_config_module(path: str):
  spec = importlib.util.spec_from_file_location("sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run_name(entry: dict[str, Any]) -> str:
  """'model-lstm_max_delay-100_seed-0' from {'model': 'lstm', 'task.max_delay': 100, 'seed': 0}.

  The last component of each dotted key, unless two keys share it (then the full key).
  """
  leaves = [k.split(".")[-1] for k in entry]
  parts = []
  for key, leaf in zip(entry, leaves):
    label = leaf if leaves.count(leaf) == 1 else key
    parts.append(f"{label}-{_flag_value(entry[key])}")
  return "_".join(parts).replace("/", "-") or "default"


def expand(config_path: str, arg: str | None, sweep_dir: str) -> list[Run]:
  """Reads `get_sweep` of the config file and returns its runs, each checked to build."""
  module = load_config_module(config_path)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"{config_path} declares no get_sweep(arg); add one next to get_config.")
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  model = parts.pop(0) if parts and parts[0] in models.MODELS else "lstm"
  runs, names = [], set()
  for entry in module.get_sweep(arg):
    entry = dict(entry)
    entry_model = entry.pop("model", model)
    run_arg = ",".join([entry_model] + parts)
    name = run_name({"model": entry_model, **entry})
    if name in names:
      raise ValueError(f"get_sweep of {config_path} lists the run {name!r} twice.")
    names.add(name)
    # Fail now, not an hour into the sweep, if an entry does not fit the config.
    config = module.get_config(run_arg)
    for path, value in entry.items():
      configlib.apply_dotted(config, path, _flag_value(value))
    try:
      build.validate_run(config)
    except ValueError as e:
      raise ValueError(f"sweep run {name}: {e}") from None
    runs.append(Run(name=name, config_arg=f"{config_path}:{run_arg}",
                    overrides=tuple(entry.items()), workdir=os.path.join(sweep_dir, name)))
  return runs


def execute(run: Run, env: dict[str, str] | None = None) -> dict[str, Any]:
  """Runs one member to completion (resuming if it has checkpoints); never raises for a run."""
  if run.finished:
    return {"name": run.name, "status": "skipped (finished)"}
  os.makedirs(run.workdir, exist_ok=True)
  log_path = os.path.join(run.workdir, "train.log")
  with open(log_path, "a") as log:
    code = subprocess.call(run.command(), stdout=log, stderr=subprocess.STDOUT,
                           env={**os.environ, **(env or {})})
  error_path = os.path.join(run.workdir, "error.txt")
  if code == 0:
    if os.path.exists(error_path):
      os.remove(error_path)  # An earlier failure is fixed.
    return {"name": run.name, "status": "done"}
  with open(log_path) as f:
    tail = f.readlines()[-40:]
  with open(error_path, "w") as f:
    f.write(f"exit status {code}\ncommand: {' '.join(run.command())}\n\n" + "".join(tail))
  return {"name": run.name, "status": f"failed (exit {code}, see {error_path})"}


def run_local(runs: list[Run], parallel: int = 1,
              visible_devices: tuple[str, ...] = ()) -> list[dict[str, Any]]:
  """Runs the sweep here, `parallel` processes at a time.

  Args:
    runs: the members.
    parallel: processes at a time.
    visible_devices: accelerator ids to spread the processes over (slot i gets
      visible_devices[i % len]) via CUDA_VISIBLE_DEVICES; empty: no assignment.
  """
  def env_for(i: int) -> dict[str, str]:
    if not visible_devices:
      return {}
    return {"CUDA_VISIBLE_DEVICES": visible_devices[i % len(visible_devices)]}

  with concurrent.futures.ThreadPoolExecutor(max_workers=max(parallel, 1)) as pool:
    futures = [pool.submit(execute, run, env_for(i % max(parallel, 1)))
               for i, run in enumerate(runs)]
    results = []
    for future in futures:
      result = future.result()
      print(f"  {result['name']}: {result['status']}", flush=True)
      results.append(result)
  return results


def run_submitit(runs: list[Run], folder: str, cluster: str | None, partition: str,
                 timeout_min: int, gpus_per_job: int, array_parallelism: int
                 ) -> list[dict[str, Any]]:
  """Submits the sweep as one job array through submitit (SLURM, or `cluster='local'`)."""
  import submitit  # pylint: disable=g-import-not-at-top  (only sweeps on clusters need it)
  executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
  params: dict[str, Any] = {"timeout_min": timeout_min}
  if executor.cluster == "slurm":
    params.update(slurm_partition=partition or None, slurm_array_parallelism=array_parallelism,
                  gpus_per_node=gpus_per_job)
  executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
  done = [{"name": r.name, "status": "skipped (finished)"} for r in runs if r.finished]
  todo = [run for run in runs if not run.finished]
  jobs = executor.map_array(execute, todo)
  print(f"Submitted {len(jobs)} jobs ({len(done)} already finished) to "
        f"{executor.cluster}; logs in {folder}.", flush=True)
  return [job.result() for job in jobs] + done


def summarize(runs: list[Run], sweep_dir: str) -> list[dict[str, Any]]:
  """Groups finished runs by their overrides minus `seed`; mean and 95% CI over seeds.

  A run of `num_seeds` K contributes its K seeds. Writes summary.csv and summary.json.
  """
  groups: dict[tuple, dict[str, Any]] = {}
  for run in runs:
    if not run.finished:
      continue
    summary = workdir_lib.read_json(os.path.join(run.workdir, workdir_lib.SUMMARY_FILE))
    key = tuple((k, v) for k, v in run.overrides if k != "seed")
    model = run.config_arg.split(":", 1)[1].split(",")[0]
    group = groups.setdefault((model, key), {"model": model, **dict(key), "runs": [],
                                             "per_seed": []})
    group["runs"].append(run.name)
    group["per_seed"] += list(summary["eval_by_seed"].values())
  rows = []
  for group in groups.values():
    per_seed = group.pop("per_seed")
    row = {**group, "num_seeds": len(per_seed)}
    for metric in SUMMARY_METRICS:
      mean, half = fits.mean_ci([m[metric] for m in per_seed])
      row[f"{metric}_mean"], row[f"{metric}_ci95"] = mean, half
    distances = sorted({d for m in per_seed for d in m["accuracy_by_distance"]}, key=int)
    row["accuracy_by_distance"] = {
        d: fits.mean_ci([m["accuracy_by_distance"][d] for m in per_seed
                         if d in m["accuracy_by_distance"]]) for d in distances}
    rows.append(row)
  workdir_lib.write_json(os.path.join(sweep_dir, "summary.json"), rows)
  columns = sorted({k for r in rows for k in r if k not in ("runs", "accuracy_by_distance")},
                   key=lambda k: (k.endswith(("_mean", "_ci95")), k != "model", k))
  with open(os.path.join(sweep_dir, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
  lines = []
  for row in rows:
    setting = " ".join(f"{k}={v}" for k, v in row.items()
                       if k not in ("runs", "accuracy_by_distance", "num_seeds")
                       and not k.endswith(("_mean", "_ci95")))
    lines.append(f"{setting}: accuracy {row['accuracy_mean']:.4f} ± {row['accuracy_ci95']:.4f}"
                 f" (95% CI, {row['num_seeds']} seeds)")
  return "\n".join(lines)
