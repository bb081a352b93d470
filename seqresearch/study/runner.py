"""One scale of the study in one directory: its settings, its runs and their training.

    study = runner.Study("quick", "runs/study-quick", config=configs.study,
                         experiments={"long_range": experiments.long_range, ...})

Layout of a study workdir:

  runs/<sweep>/<run>/          training runs (the sweep machinery: finished runs are reused,
                               a killed run resumes from its newest checkpoint)
  learning_rates.json          at a scale that tunes: each variant's rate, chosen from the
                               learning_rate sweep before any other sweep (`tuning`)
  <experiment>/results.json    every number an experiment reports, with the runs it came from
  <experiment>/*.png           its figures
  REPORT.md                    the sections, tables, the measured Table 1 and the verdicts

The study's config module (configs/study.py) provides `SCALES`, `get_study(scale)`,
`get_config(arg)` and `get_sweep(arg)`; the training runs are started with
`--config=<its file>:sweep=NAME,scale=SCALE` (plus `,learning_rates=<learning_rates.json>` at
a scale that tunes). An experiment module provides:

  TITLE, CLAIM: str               the question and what the essay claims
  SWEEPS: tuple[str, ...]         its training runs: sweep names of the config module
  run(study) -> dict              the analysis: JSON-ready results (sweeps already trained)
  figures(results, out_dir)       -> [PNG paths]
  tables(results) -> str          markdown
  verdict(results) -> Verdict     a paragraph computed from the numbers in `results`
  TIMED = True (optional)         it measures wall time: analysed alone, after the others
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from ml_collections import config_dict

from seqresearch import build
from seqresearch import sweep
from seqresearch import sweep_launch
from seqresearch import workdir as workdir_lib
from seqresearch.study import tuning
from seqresearch.study import variants


@dataclasses.dataclass
class Study:
  """One scale of the study in one directory.

  Attributes:
    scale: a key of `config.SCALES` (smoke, quick, ...).
    workdir: the study directory.
    config: the study's config module (configs/study.py).
    experiments: {name: experiment module}, in report order.
    parallel: training processes at a time.
  """

  scale: str
  workdir: str
  config: ModuleType
  experiments: Mapping[str, ModuleType]
  parallel: int = 1

  def __post_init__(self) -> None:
    if self.scale not in self.config.SCALES:
      raise ValueError(f"--scale={self.scale!r}: must be one of {tuple(self.config.SCALES)}.")
    self.settings = self.config.get_study(self.scale)  # the scale's grids and settings
    self.experiments = dict(self.experiments)

  # Modules do not pickle: analyses run in spawned processes re-import them by name.
  def __getstate__(self) -> dict[str, Any]:
    state = dict(self.__dict__)
    state["config"] = self.config.__name__
    state["experiments"] = {k: m.__name__ for k, m in self.experiments.items()}
    return state

  def __setstate__(self, state: dict[str, Any]) -> None:
    state["config"] = importlib.import_module(state["config"])
    state["experiments"] = {k: importlib.import_module(m)
                            for k, m in state["experiments"].items()}
    self.__dict__.update(state)

  @property
  def smoke(self) -> bool:
    """Whether this scale only checks the pipeline (no verdicts; see configs/study.py)."""
    return bool(self.settings.pipeline_check_only)

  @property
  def tunes(self) -> bool:
    """Whether this scale chooses each variant's learning rate by a sweep (`tuning`)."""
    return len(self.settings.learning_rate.rates) > 1

  @property
  def learning_rates_file(self) -> str:
    """The chosen rates of this study (`tuning.FILE`), absolute: it travels in an argument."""
    return os.path.abspath(tuning.path(self.workdir))

  def sweep_dir(self, name: str) -> str:
    return os.path.join(self.workdir, "runs", name)

  def runs(self, name: str) -> list[sweep.Run]:
    """The members of sweep `name` at this scale (not run; see `train`).

    Raises:
      ValueError: at a scale that tunes, a sweep other than the learning-rate one before its
        rates are chosen (`train` chooses them first).
    """
    arg = f"sweep={name},scale={self.scale}"
    if self.tunes and name != tuning.SWEEP:
      file = self.learning_rates_file
      if not os.path.isfile(file):
        raise ValueError(f"sweep {name!r} at scale {self.scale!r} trains each variant at the "
                         f"learning rate the {tuning.SWEEP!r} sweep chose, and none is chosen "
                         f"yet ({file} is missing): train that sweep first (Study.train does).")
      if "," in file or "=" in file:
        raise ValueError(f"--workdir={self.workdir}: a study that tunes its learning rates "
                         "passes the path in a config argument; it must hold no ',' or '='.")
      arg += f",learning_rates={file}"
    return sweep.expand(self.config.__file__, arg, self.sweep_dir(name))

  def choose_learning_rates(self) -> dict[str, Any]:
    """Picks each variant's rate from the finished pilot runs; writes `learning_rates_file`.

    Raises:
      ValueError: no pilot run of some variant finished (it would have no rate).
    """
    losses: dict[str, dict[float, list[float | None]]] = {}
    runs = self.runs(tuning.SWEEP)
    for run in runs:
      losses.setdefault(self.variant(run), {})
      if run.finished:
        evals = run_summary(run)["eval_by_seed"]
        rate = float(dict(run.overrides)["optimizer.learning_rate"])
        losses[self.variant(run)][rate] = [evals[k]["loss"] for k in sorted(evals, key=int)]
    missing = [name for name, by_rate in losses.items() if not by_rate]
    if missing:
      raise ValueError(f"no {tuning.SWEEP!r} run of {missing} finished (see their error.txt "
                       f"under {self.sweep_dir(tuning.SWEEP)}): no learning rate to choose.")
    chosen = tuning.choose_all(losses)
    workdir_lib.write_json(self.learning_rates_file, chosen)
    return chosen

  def train(self, names: Sequence[str]) -> list[dict[str, Any]]:
    """Runs the unfinished members of the sweeps `names` (all at once, `parallel` at a time).

    Finished runs are skipped; a failed run is recorded in its error.txt and the others go
    on. Writes each sweep's summary.{json,csv} (mean and 95% CI over seeds). At a scale that
    tunes, the learning-rate sweep trains first and the chosen rates are written before the
    other sweeps are expanded (they read them).

    Raises:
      ValueError: a finished run was trained with other settings than the config gives now
        (`sweep.expand` refuses to reuse it, naming the fields); no pilot run of a variant
        finished.
    """
    names = list(dict.fromkeys(names))
    if not self.tunes or not names:
      return self._train(names)
    results = self._train([tuning.SWEEP])
    self.choose_learning_rates()
    return results + self._train([n for n in names if n != tuning.SWEEP])

  def _train(self, names: Sequence[str]) -> list[dict[str, Any]]:
    by_name = {name: self.runs(name) for name in names}
    todo = [run for runs in by_name.values() for run in runs if not run.finished]
    # Longest first, so that `parallel` workers finish together.
    todo.sort(key=_cost_rank, reverse=True)
    results = sweep_launch.run_local(todo, self.parallel) if todo else []
    for name, runs in by_name.items():
      if any(run.finished for run in runs):
        sweep.summarize(runs, self.sweep_dir(name))
    return results

  def variant(self, run: sweep.Run) -> str:
    """The variant (`variants.variant`) whose fields the run has: the most specific one."""
    return variant_of(run.model, dict(run.overrides))

  def relpath(self, path: str) -> str:
    """`path` relative to the study directory (how REPORT.md names files)."""
    return os.path.relpath(path, self.workdir)


def variant_of(model: str, fields: Mapping[str, Any]) -> str:
  """The most specific variant of table model `model` whose fields `fields` (dotted) has."""
  candidates = [variants.variant(model)] + [v for v in variants.EXTRA.values()
                                            if v.model == model]
  matches = [(len(v.fields), v.name) for v in candidates
             if all(fields.get(k) == value for k, value in v.fields.items())]
  return max(matches)[1]


def _cost_rank(run: sweep.Run) -> int:
  """A proxy for a run's cost, to start the longest first: the tokens it trains on (steps x
  seeds x batch x sequence length), doubled for a model outside the recurrent families.

  Longest first keeps the `parallel` workers busy to the end. The proxy is coarse: per token
  (quick scale, idle CPU, compilation included) the Transformer's copy run took 46 µs, the
  CNN's 20 µs, the LSTM's 11 µs and the anchors' S6 94 µs, which the proxy does not weigh;
  S6 then starts 14th of quick's 43 runs (ranked by the distance field it lacks, it started
  last and ran alone for a minute), with shorter runs enough to fill both workers.
  """
  config = run.config
  try:
    length = build.task_settings(config_dict.ConfigDict(config["task"])).seq_len
    tokens = config["num_train_steps"] * config["num_seeds"] * config["batch_size"] * length
  except (KeyError, TypeError, ValueError):  # a member that failed validation: no config
    return 0
  return int(tokens * (1 if variants.variant(run.model).is_recurrent else 2))


def run_summary(run: sweep.Run) -> dict[str, Any]:
  """The run's summary.json (its final evaluation per seed under 'eval_by_seed')."""
  return workdir_lib.read_json(os.path.join(run.workdir, workdir_lib.SUMMARY_FILE))


def failed_runs(study: Study, runs: Sequence[sweep.Run]) -> list[str]:
  """Run directories (relative to the study) that did not finish."""
  return [study.relpath(run.workdir) for run in runs if not run.finished]
