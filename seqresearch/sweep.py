"""Sweeps: expand a config file's `get_sweep(arg)` into runs, check them, summarise over seeds.

A config file declares its sweep next to `get_config`:

  def get_sweep(arg) -> list[dict]:   # one dict of typed values per run
    return [{"model": m, "task.max_delay": d, "seed": s} for m in ... for d in ... for s in ...]

`model` picks the model of the config argument; every other key is a dotted config field,
set on the config as the typed value given (an int where the field holds a float is widened; a
float, string or bool where it holds an int is refused). If the argument names a model and the
entries set `model` too, the sweep is restricted to the entries of that model (an argument
naming a model the sweep does not list is refused).

Run identity: a run is its whole resolved config. Its directory under the sweep is
`<readable name>-<hash>`: the readable name comes from the entry ('model-lstm_seed-0'), the hash
is the first 10 hex digits of the SHA-256 of the resolved config (every field, including the
options of the config argument; fields that change no number, `configlib.PRESENTATION_FIELDS`,
left out). Two sweeps that differ in any setting never share a run directory. A finished run
(summary.json present) is reused only if its config.json equals the config the sweep builds
now; any difference is refused, naming the fields.

Seeds: a run trains seeds `seed .. seed + num_seeds - 1`. Runs of one setting (the resolved
config without `seed` and `num_seeds`) whose seed ranges overlap are refused at expansion, and
the summary pools one sample per (setting, seed id): its seed count is the number of distinct
seeds, listed beside each row.

Launching (here, on a cluster): `seqresearch.sweep_launch`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import sys
from typing import Any

from ml_collections import config_dict

from seqresearch import build
from seqresearch import configlib
from seqresearch import models
from seqresearch import workdir as workdir_lib
from seqresearch.analysis import fits

SUMMARY_METRICS = ("accuracy", "sequence_accuracy", "loss")
SEED_FIELDS = ("seed", "num_seeds")
HASH_DIGITS = 10
# Types a sweep value may have: each survives the command line exactly (see `flag_value`).
VALUE_TYPES = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class Run:
  """One member of a sweep.

  Attributes:
    name: directory name under the sweep: readable name from the entry, '-', config hash.
    config_arg: `path:arg` for --config (the model first).
    overrides: dotted fields (no `model`) and their typed values, as in the entry.
    workdir: the run directory.
    seeds: the seed ids the run trains (seed .. seed + num_seeds - 1).
    setting: hash of the resolved config without `seed`/`num_seeds`: runs of one setting
      differ only in their seeds, and the summary pools them.
    config: the resolved config as JSON data (what config.json must hold).
    error: why the member failed validation (then it is not run), or None.
  """

  name: str
  config_arg: str
  overrides: tuple[tuple[str, Any], ...]
  workdir: str
  seeds: tuple[int, ...] = ()
  setting: str = ""
  config: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
  error: str | None = None

  def command(self) -> list[str]:
    """The child process: `python -m seqresearch.train_cli` with this run's flags."""
    flags = [f"--config.{k}={flag_value(v)}" for k, v in self.overrides]
    return [sys.executable, "-m", "seqresearch.train_cli", f"--config={self.config_arg}",
            f"--workdir={self.workdir}", "--config.progress_bar=false", *flags]

  @property
  def model(self) -> str:
    return self.config_arg.split(":", 1)[1].split(",")[0]

  @property
  def finished(self) -> bool:
    return os.path.exists(os.path.join(self.workdir, workdir_lib.SUMMARY_FILE))

  def config_changes(self) -> list[str]:
    """How the run directory's config.json differs from `config` ('field: a there, b now')."""
    path = os.path.join(self.workdir, workdir_lib.CONFIG_FILE)
    if not os.path.exists(path):
      return [f"{workdir_lib.CONFIG_FILE}: missing"]
    return config_differences(workdir_lib.read_json(path), self.config)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(tree, dict):
    return {prefix.rstrip("."): tree}
  return {k: v for key, value in tree.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}


def config_differences(there: dict[str, Any], now: dict[str, Any]) -> list[str]:
  """'field: X there, Y now' for each field (dotted) whose value differs between two config
  JSONs; top-level `configlib.PRESENTATION_FIELDS` are left out (they change no number)."""
  a, b = _flatten(there), _flatten(now)
  return [f"{k}: {a.get(k)!r} there, {b.get(k)!r} now" for k in sorted(set(a) | set(b))
          if k.split(".")[0] not in configlib.PRESENTATION_FIELDS and a.get(k) != b.get(k)]


def flag_value(value: Any) -> str:
  """The command-line text of a sweep value that absl/ml_collections parse back to `value`.

  Floats use `repr` (shortest text that round-trips exactly: 0.1, 1e-07, inf); bools are
  'true'/'false' (absl's spelling); ints and strings as they are.
  """
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float):
    return repr(value)
  return str(value)


def load_config_module(path: str):
  """The config file at `path` as a module (like --config=path does)."""
  if not os.path.isfile(path):
    raise ValueError(f"config file {path!r}: no such file.")
  spec = importlib.util.spec_from_file_location("sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run_name(entry: dict[str, Any]) -> str:
  """'model-lstm_max_delay-100_seed-0' from {'model': 'lstm', 'task.max_delay': 100, 'seed': 0}.

  The last component of each dotted key, unless two keys share it (then the full key). The
  name is for reading; the run's directory adds the config hash (see `Run.name`).
  """
  leaves = [k.split(".")[-1] for k in entry]
  parts = []
  for key, leaf in zip(entry, leaves):
    label = leaf if leaves.count(leaf) == 1 else key
    parts.append(f"{label}-{flag_value(entry[key])}")
  return "_".join(parts).replace("/", "-") or "default"


def config_hash(config_json: dict[str, Any], leave_out: tuple[str, ...] = ()) -> str:
  """First HASH_DIGITS hex digits of the SHA-256 of the config's canonical JSON.

  Top-level `configlib.PRESENTATION_FIELDS` and `leave_out` are not part of the identity.
  """
  kept = {k: v for k, v in config_json.items()
          if k not in configlib.PRESENTATION_FIELDS and k not in leave_out}
  text = json.dumps(kept, sort_keys=True, allow_nan=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()[:HASH_DIGITS]


def apply_value(config: config_dict.ConfigDict, path: str, value: Any) -> None:
  """Sets `config.<path> = value` as the typed value (no string round trip).

  Raises:
    ValueError: no such group or field; a value of a type a flag cannot carry; a value the
      field's type does not accept (bool for a number, float for an int, ...).
  """
  node, leaf = configlib.find_field(config, path, f"{path}={value!r}")
  old = node[leaf]
  kind = type(old).__name__
  if not isinstance(value, VALUE_TYPES):
    raise ValueError(f"{path}={value!r}: a sweep value must be one of bool, int, float, str.")
  if old is not None and isinstance(value, bool) != isinstance(old, bool):
    raise ValueError(f"{path}={value!r}: the field holds a {kind}; give a {kind}.")
  try:
    node[leaf] = value
  except TypeError:
    raise ValueError(f"{path}={value!r}: the field holds a {kind}; give a {kind}.") from None


def _split_model(arg: str | None) -> tuple[str | None, list[str]]:
  """The model named in the config argument (or None) and the argument's other parts."""
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  named = [p for p in parts if "=" not in p and p in models.MODELS]
  if len(named) > 1:
    raise ValueError(f"config argument {arg!r}: names two models, {named[0]!r} and {named[1]!r}.")
  return (named[0] if named else None), [p for p in parts if p not in named]


def _select_model(entries: list[dict[str, Any]], model: str | None,
                  config_path: str) -> list[dict[str, Any]]:
  """An explicit model in the argument restricts a sweep whose entries name models to it."""
  listed = sorted({e["model"] for e in entries if "model" in e})
  if model is None or not listed:
    return entries
  if model not in listed:
    raise ValueError(f"config argument names model {model!r}, but get_sweep of {config_path} "
                     f"lists only {listed}; name one of them, or none to sweep them all.")
  return [e for e in entries if e.get("model", model) == model]


def _build_member(module, config_path: str, model: str, rest: list[str],
                  entry: dict[str, Any], sweep_dir: str) -> Run:
  run_arg = ",".join([model, *rest])
  readable = run_name({"model": model, **entry})
  overrides = tuple(entry.items())
  try:
    config = module.get_config(run_arg)
    for path, value in overrides:
      apply_value(config, path, value)
    build.validate_run(config)
  except ValueError as e:
    return Run(name=readable, config_arg=f"{config_path}:{run_arg}", overrides=overrides,
               workdir=os.path.join(sweep_dir, readable), error=str(e))
  resolved = json.loads(config.to_json_best_effort())
  name = f"{readable}-{config_hash(resolved)}"
  return Run(name=name, config_arg=f"{config_path}:{run_arg}", overrides=overrides,
             workdir=os.path.join(sweep_dir, name),
             seeds=tuple(range(config.seed, config.seed + config.num_seeds)),
             setting=config_hash(resolved, leave_out=SEED_FIELDS), config=resolved)


def _check_seeds(runs: list[Run]) -> None:
  """Refuses two runs of one setting that train a common seed id (it would count twice)."""
  by_setting: dict[str, list[Run]] = {}
  for run in runs:
    by_setting.setdefault(run.setting, []).append(run)
  for members in by_setting.values():
    for i, a in enumerate(members):
      for b in members[i + 1:]:
        shared = sorted(set(a.seeds) & set(b.seeds))
        if shared:
          raise ValueError(
              f"sweep runs {a.name} (seeds {list(a.seeds)}) and {b.name} (seeds "
              f"{list(b.seeds)}) are one setting and both train seed(s) {shared}: a seed "
              "would count twice. Step the seed axis by num_seeds (seed in range(0, S*K, K)) "
              "or use num_seeds=1.")


def expand(config_path: str, arg: str | None, sweep_dir: str,
           keep_invalid: bool = False) -> list[Run]:
  """Reads `get_sweep` of the config file and returns its runs, each resolved and checked.

  Args:
    config_path: the config file (declares get_config and get_sweep).
    arg: the config argument (what follows ':' in --config); its model, if any, restricts
      the sweep to that model's entries.
    sweep_dir: the sweep directory; run i's workdir is `sweep_dir/<runs[i].name>`.
    keep_invalid: return members that fail validation with `error` set, instead of raising.

  Raises:
    ValueError: no such file, no get_sweep, a bad argument, members that fail validation
      (one line each, unless keep_invalid), two runs of one setting sharing a seed, a run
      listed twice, or a finished run whose config.json differs from its config now.
  """
  module = load_config_module(config_path)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"{config_path} declares no get_sweep(arg); add one next to get_config.")
  model, rest = _split_model(arg)
  default = module.get_config(arg)  # A misspelt option or model in the argument fails here.
  entries = _select_model([dict(e) for e in module.get_sweep(arg)], model, config_path)
  runs = [_build_member(module, config_path, e.pop("model", model or default.model.name), rest,
                        e, sweep_dir) for e in entries]
  invalid = [f"sweep run {r.name}: {r.error}" for r in runs if r.error]
  if invalid and not keep_invalid:
    raise ValueError("\n".join(invalid))
  valid = [r for r in runs if not r.error]
  names = [r.name for r in valid]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ValueError(f"get_sweep of {config_path} lists the run {twice[0]!r} twice.")
  _check_seeds(valid)
  stale = [f"{r.workdir}: {'; '.join(d[:5])}" for r in valid
           if r.finished and (d := r.config_changes())]
  if stale:
    raise ValueError("finished runs hold another config than the sweep builds now, so they "
                     "cannot be reused (delete them or use another --workdir): "
                     + " | ".join(stale))
  return runs


def _number(value: Any) -> float | None:
  """A summary's metric as a float; None (written for a diverged seed) stays None."""
  return None if value is None else float(value)


def _statistic(metric: str, values: list[float | None]) -> dict[str, Any]:
  """Mean and 95% CI half-width, None (with the reason) where a number cannot be given."""
  out: dict[str, Any] = {f"{metric}_mean": None, f"{metric}_ci95": None}
  bad = sum(v is None or not math.isfinite(v) for v in values)  # None: a diverged seed
  if bad:
    out[f"{metric}_null_reason"] = f"{bad} of {len(values)} seeds non-finite"
    return out
  mean, half = fits.mean_ci(values)
  out[f"{metric}_mean"] = mean
  if math.isfinite(half):
    out[f"{metric}_ci95"] = half
  else:
    out[f"{metric}_null_reason"] = "one seed: no interval"
  return out


def summarize(runs: list[Run], sweep_dir: str) -> list[dict[str, Any]]:
  """Pools finished runs by setting: mean and 95% CI over one sample per distinct seed id.

  Each row: the model and the entry's fields (seed fields left out), `setting` (hash),
  `runs`, `seeds` (the ids pooled), `num_seeds` (their count), `<metric>_mean`,
  `<metric>_ci95` (None with `<metric>_null_reason` where undefined: one seed, or non-finite
  seeds, which are counted, not dropped) and `accuracy_by_distance`. Writes summary.json
  (strict JSON: no NaN) and summary.csv (seeds joined by spaces).
  """
  groups: dict[str, dict[str, Any]] = {}
  for run in runs:
    if run.error or not run.finished:
      continue
    summary = workdir_lib.read_json(os.path.join(run.workdir, workdir_lib.SUMMARY_FILE))
    labels = {k: v for k, v in run.overrides if k not in SEED_FIELDS}
    key = run.setting or repr((run.model, sorted(labels.items())))  # Runs made by hand.
    group = groups.setdefault(key, {"model": run.model, **labels, "setting": run.setting,
                                    "runs": [], "by_seed": {}})
    group["runs"].append(run.name)
    for seed, metrics in summary["eval_by_seed"].items():
      group["by_seed"].setdefault(int(seed), metrics)  # One sample per (setting, seed id).
  rows = []
  for group in groups.values():
    by_seed = group.pop("by_seed")
    seeds = sorted(by_seed)
    per_seed = [by_seed[s] for s in seeds]
    row = {**group, "seeds": seeds, "num_seeds": len(seeds)}
    for metric in SUMMARY_METRICS:
      row.update(_statistic(metric, [_number(m[metric]) for m in per_seed]))
    distances = sorted({d for m in per_seed for d in m["accuracy_by_distance"]}, key=int)
    row["accuracy_by_distance"] = {}
    for d in distances:
      values = [_number(m["accuracy_by_distance"][d]) for m in per_seed
                if d in m["accuracy_by_distance"]]
      stat = _statistic("accuracy", values)
      row["accuracy_by_distance"][d] = {k.replace("accuracy_", ""): v for k, v in stat.items()}
    rows.append(row)
  text = json.dumps(rows, indent=2, sort_keys=True, allow_nan=False)  # Strict JSON, or raise.
  workdir_lib.write_json(os.path.join(sweep_dir, "summary.json"), json.loads(text))
  columns = sorted({k for r in rows for k in r if k not in ("runs", "accuracy_by_distance")},
                   key=lambda k: (k.startswith(SUMMARY_METRICS), k != "model", k))
  with open(os.path.join(sweep_dir, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({**r, "seeds": " ".join(map(str, r["seeds"]))} for r in rows)
  return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
  """One line per setting: mean ± 95% CI of the accuracy, and the seeds behind it."""
  lines = []
  for row in rows:
    setting = " ".join(f"{k}={v}" for k, v in row.items()
                       if k not in ("runs", "accuracy_by_distance", "num_seeds", "seeds",
                                    "setting") and not k.startswith(SUMMARY_METRICS))
    mean, half = row["accuracy_mean"], row["accuracy_ci95"]
    if mean is None:
      number = f"n/a ({row['accuracy_null_reason']})"
    elif half is None:
      number = f"{mean:.4f} ({row['accuracy_null_reason']})"
    else:
      number = f"{mean:.4f} ± {half:.4f} (95% CI)"
    lines.append(f"{setting}: accuracy {number}, {row['num_seeds']} seeds {row['seeds']}")
  return "\n".join(lines)
