"""The one training loop: `train_and_evaluate(config, workdir)`.

Data flows one way: config -> (task, model, optimizer) -> jitted step (`steps`) -> workdir
(`workdir`, `metric_writer`, `checkpointing`).

Exactness: the data of step s is `make_batch(fold_in(data_key, s))` and the running train-metric
sums live in the checkpointed state, so a run killed at any moment and rerun ends bit-identical
to an uninterrupted one. Metrics leave the device only at log, eval and checkpoint steps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from typing import Any

import jax
import numpy as np
from flax import nnx
from ml_collections import config_dict

from seqresearch import build
from seqresearch import checkpointing
from seqresearch import distributed
from seqresearch import environment
from seqresearch import host_memory
from seqresearch import metric_writer
from seqresearch import progress
from seqresearch import steps
from seqresearch import workdir as workdir_lib


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or Inf."""


def _check_finite(state: steps.TrainState, checkpoints: checkpointing.Checkpoints,
                  eval_losses: tuple[float, ...] = (), seeds: tuple[int, ...] = (),
                  announced: set[int] | None = None) -> None:
  """Stops the run when every seed's loss went NaN/Inf; names a seed that alone diverged.

  A run of several seeds goes on while one of them is finite: a diverged seed is a result
  (counted by the study, never dropped), and stopping would lose the others. Its metrics are
  recorded as null from then on (`nonfinite_seeds` in the summary).

  Args:
    state: the train state, leaves [S, ...].
    checkpoints: the run's checkpoints (to name the last good one).
    eval_losses: the last evaluation's loss per seed, if one was just run.
    seeds: the seed ids (for the message).
    announced: seeds already reported as diverged (updated in place).

  Raises:
    NonFiniteLossError: no seed is finite any more.
  """
  first_bad_S = np.asarray(state.first_nonfinite_step).reshape(-1)
  bad_S = first_bad_S >= 0
  if len(eval_losses):
    bad_S = bad_S | ~np.isfinite(np.asarray(eval_losses, np.float64))
  if not bad_S.any():
    return
  if not bad_S.all():
    for s in np.flatnonzero(bad_S):
      seed = seeds[s] if s < len(seeds) else int(s)
      if announced is not None and seed not in announced:
        announced.add(seed)
        at = int(first_bad_S[s]) if first_bad_S[s] >= 0 else int(np.asarray(state.step).max())
        progress.note(f"WARNING: seed {seed} became NaN/Inf at step {at}; its metrics are "
                      f"recorded as null and the other {int((~bad_S).sum())} seed(s) go on.")
    return
  train_bad = first_bad_S >= 0
  bad, what = ((int(first_bad_S[train_bad].min()), "training loss or gradient norm")
               if train_bad.any() else (int(np.asarray(state.step).max()), "evaluation loss"))
  checkpoints.wait()
  last = checkpoints.latest_step()
  where = (f"the last good checkpoint is step {last} in {checkpoints.directory}"
           if last is not None else "no checkpoint was saved before it")
  raise NonFiniteLossError(
      f"{what} became NaN/Inf at step {bad}{' in every seed' if len(bad_S) > 1 else ''}; "
      f"{where}. Lower optimizer.learning_rate (or optimizer.grad_clip_norm) and rerun: it "
      "resumes from that checkpoint and records the change; turning clipping on or off needs "
      "--restart.")


def finite_or_none(metrics: dict[str, Any]) -> dict[str, Any]:
  """`metrics` with every non-finite number replaced by None (strict JSON), dicts included."""
  def fix(value: Any) -> Any:
    if isinstance(value, dict):
      return {k: fix(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
      return None
    return value
  return {k: fix(v) for k, v in metrics.items()}


def mean_metrics(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
  """Average over seeds of every scalar metric and, key by key, of every dict metric.

  Non-finite values (None or NaN: a seed that diverged) are left out of the mean; the summary
  names those seeds (`nonfinite_seeds`), so none is dropped silently. None where no seed is
  finite.
  """
  def mean(values: list[Any]) -> float | None:
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None

  out = {}
  for name, value in per_seed[0].items():
    if isinstance(value, dict):
      keys = sorted({k for m in per_seed for k in m[name]}, key=int)
      out[name] = {k: mean([m[name][k] for m in per_seed if k in m[name]]) for k in keys}
    else:
      out[name] = mean([m[name] for m in per_seed])
  return out


def _environment() -> dict[str, Any]:
  return {"host_allocator": host_memory.current(), "versions": environment.versions(),
          "device": environment.device()}


class _PreemptionFlag:
  """Set by SIGTERM (preemption); the loop then checkpoints and returns."""

  def __init__(self) -> None:
    self.set = False
    self._previous = None

  def __enter__(self) -> "_PreemptionFlag":
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame) -> None:
    del signum, frame
    self.set = True

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(config: config_dict.ConfigDict, workdir: str,
                       restart: bool = False) -> dict[str, Any]:
  """Trains and evaluates one run, resuming from the workdir's newest intact checkpoint if any.

  The workdir is locked while the run trains in it (a second writer is refused with the
  holder's PID). A resumed run may change the fields in `workdir.RESUMABLE_FIELDS`; each change
  is recorded with the step it took effect at. Rerunning a finished run changes nothing and
  returns its summary.

  Args:
    config: a run config (see `configs/`); `num_seeds` > 1 trains that many seeds at once.
    workdir: where config.json, metrics.jsonl, tensorboard/, checkpoints/, summary.json go.
    restart: move an existing run in `workdir` aside instead of resuming or refusing it.

  Returns:
    The summary (also written to summary.json): `eval` (mean over seeds), `eval_by_seed`,
    steps, wall time (summed over every process that trained the run), `config_changes`,
    versions, device; `preempted: True` if SIGTERM stopped it early (after saving a checkpoint;
    summary.json is then not written).

  Raises:
    ValueError: a bad config, or one the workdir's run cannot continue with.
    workdir.WorkdirInUseError: another process trains in `workdir`.
    checkpointing.DamagedCheckpointError: checkpoints exist and none restores intact.
    workdir.DiskFullError: a write ran out of space (one line: the path, the space needed).
    NonFiniteLossError: the loss became NaN/Inf (the step and last good checkpoint named).
  """
  # Everything that can be wrong with the config fails here, before anything is compiled.
  settings = build.validate_run(config, num_devices=jax.device_count(),
                                warn=distributed.is_leader())
  build.check_memory(config, settings, jax.device_count())  # before compiling for minutes
  lock, changes = None, []
  if distributed.is_leader():
    lock, changes = workdir_lib.prepare(config, workdir, restart)
  try:
    distributed.barrier("workdir prepared")
    return _train(config, workdir, changes)
  finally:
    if lock is not None:
      lock.release()


def _train(config: config_dict.ConfigDict, workdir: str,
           changes: list[dict[str, Any]]) -> dict[str, Any]:
  """The loop of `train_and_evaluate`, in a prepared and locked workdir."""
  leader = distributed.is_leader()
  clock = workdir_lib.WallClock(workdir)
  run = build.build_run(config)
  state, keys, mesh, seeds = run.state, run.keys, run.mesh, list(run.seeds)
  total = config.num_train_steps

  with contextlib.ExitStack() as cleanup:  # Closes all of them even if one close fails.
    checkpoints = checkpointing.Checkpoints(
        os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints,
        keep_best=config.keep_best_checkpoints, writer=leader)
    cleanup.callback(checkpoints.close)
    start, state = checkpoints.restore_latest(state)
    config_json = json.loads(config.to_json_best_effort())
    if start is not None:
      _check_recorded_config(checkpoints, start, config_json)
      if start > total:
        raise ValueError(f"num_train_steps={total}: the run in {workdir} is already at step "
                         f"{start}; must be >= {start}.")
      progress.note(f"Resuming {workdir} from step {start}.")
    start = start or 0
    recorded = workdir_lib.record_changes(config, workdir, start, changes) if leader else []
    summary_path = os.path.join(workdir, workdir_lib.SUMMARY_FILE)
    if start == total and os.path.exists(summary_path):
      return _finished(summary_path, recorded, leader)  # Nothing to redo, nothing to rewrite.

    writer = metric_writer.MetricWriter(workdir, resume_step=start if start else None,
                                        enabled=leader)
    cleanup.callback(writer.close)
    task = run.settings.task
    train_step = steps.make_train_step(run.graphdef, run.constants, run.tx, task,
                                       config.batch_size, mesh)
    evaluate = steps.make_evaluator(run.graphdef, run.constants, task, config.eval_batch_size,
                                    config.num_eval_batches, mesh)

    def write_all(step: int, split: str, per_seed: list[dict[str, Any]]) -> None:
      for seed, metrics in zip(seeds, per_seed):
        writer.write(step, split, finite_or_none(metrics), seed=seed)

    last_eval = None
    diverged: set[int] = set()  # seeds that went NaN/Inf while others stayed finite
    if start == 0:
      last_eval = evaluate(state.params, keys["eval"])
      write_all(0, "eval", last_eval)

    bar = progress.Progress(total, start, enabled=config.progress_bar, quiet=not leader)
    cleanup.callback(bar.close)
    preempted = False
    tick_time, tick_step = time.time(), start
    with _PreemptionFlag() as preemption:
      for step in range(start + 1, total + 1):
        state = train_step(state, keys["data"])
        bar.advance()
        is_last = step == total
        if step % config.log_every_steps == 0 or is_last:
          _check_finite(state, checkpoints, seeds=tuple(seeds), announced=diverged)
          sums = jax.device_get(state.sums)
          now = time.time()
          rate = (step - tick_step) / max(now - tick_time, 1e-9)
          tick_time, tick_step = now, step
          lines = [{name: float(getattr(sums, name)[k]) / max(int(sums.steps[k]), 1)
                    for name in ("loss", "accuracy", "grad_norm")} | {"steps_per_sec": rate}
                   for k in range(len(seeds))]
          write_all(step, "train", lines)
          bar.report(step, mean_metrics(lines))
          state = steps.reset_sums(state)
          if leader:
            clock.save()
        eval_metrics = None
        if step % config.eval_every_steps == 0 or is_last:
          last_eval = eval_metrics = evaluate(state.params, keys["eval"])
          _check_finite(state, checkpoints, tuple(m["loss"] for m in eval_metrics),
                        seeds=tuple(seeds), announced=diverged)
          write_all(step, "eval", eval_metrics)
          bar.report(step, mean_metrics(eval_metrics), split="eval")
        if step % config.checkpoint_every_steps == 0 or is_last or preemption.set:
          # Never save a state in which no seed is finite.
          _check_finite(state, checkpoints, seeds=tuple(seeds), announced=diverged)
          best = None
          if eval_metrics:
            best_value = mean_metrics(eval_metrics)[checkpointing.BEST_METRIC]
            best = None if best_value is None else {checkpointing.BEST_METRIC: best_value}
          checkpoints.save(step, state, metrics=best, config=config_json)
        if preemption.set and not is_last:
          progress.note(f"SIGTERM at step {step}: checkpoint saved; exiting.")
          preempted = True
          break

  if last_eval is None:  # Resumed at the final step: its eval lines are already in the file.
    final = int(np.asarray(state.step).max())
    lines = [m for m in metric_writer.read_metrics(workdir)
             if m["split"] == "eval" and m["step"] == final]
    last_eval = [{k: v for k, v in m.items() if k not in ("step", "split", "seed")}
                 for m in lines]
  summary = {
      "final_step": int(np.asarray(state.step).max()),
      "num_train_steps": total,
      "preempted": preempted,
      "seeds": seeds,
      "eval": mean_metrics(last_eval),
      "eval_by_seed": {str(seed): finite_or_none(m) for seed, m in zip(seeds, last_eval)},
      "nonfinite_seeds": sorted(diverged),
      "num_params": run.num_params,
      "chance_accuracy": task.chance_accuracy,
      "wall_time_sec": clock.save() if leader else clock.total(),
      "config_changes": recorded,
      **_environment(),
  }
  if not preempted and leader:
    workdir_lib.write_json(summary_path, summary)
  return summary


def _check_recorded_config(checkpoints: checkpointing.Checkpoints, step: int,
                           config_json: dict[str, Any]) -> None:
  """Refuses a checkpoint saved under a config that differs from this one in a field that may
  not change on resume (config.json was edited or replaced since)."""
  recorded = checkpoints.recorded_config(step)
  if recorded is None:
    return  # Saved before checkpoints held their config.
  _, refusals = workdir_lib.config_changes(recorded, config_json)
  if refusals:
    raise ValueError(
        f"checkpoint step {step} in {checkpoints.directory} was saved by a run with another "
        f"config ({'; '.join(refusals[:5])}): config.json no longer describes the run that "
        "wrote it. Use another --workdir, or pass --restart to move the old run aside.")


def _finished(summary_path: str, recorded: list[dict[str, Any]],
              leader: bool) -> dict[str, Any]:
  """The stored summary of a finished run (with any presentation change just recorded)."""
  summary = workdir_lib.read_json(summary_path)
  if leader and summary.get("config_changes", []) != recorded:
    summary["config_changes"] = recorded
    workdir_lib.write_json(summary_path, summary)
  return summary


def format_summary(summary: dict[str, Any]) -> str:
  """A human-readable end-of-run report: final metrics and accuracy by distance."""
  ev = summary["eval"]
  seeds = summary["seeds"]
  lines = [f"Seeds {seeds} (metrics are their mean)." if len(seeds) > 1 else f"Seed {seeds[0]}.",
           f"Finished step {summary['final_step']} in {summary['wall_time_sec']:.0f}s "
           f"({summary['num_params']:,} parameters, {summary['device']['kind']}).",
           f"eval loss {ev['loss']:.4f}  accuracy {ev['accuracy']:.4f}  "
           f"sequence accuracy {ev['sequence_accuracy']:.4f}"]
  if "chance_accuracy" in summary:  # summaries written before the field lack it
    lines.append(f"chance accuracy {summary['chance_accuracy']:.4f}")
  if "memoryless_baseline_loss" in ev:
    lines.append(f"memoryless baseline loss {ev['memoryless_baseline_loss']:.4f}")
  for name in ("accuracy_by_distance", "accuracy_by_attractors"):
    if ev.get(name):
      lines.append(f"{name.replace('_', ' ')}:")
      lines += [f"  {k:>6}: {v:.4f}" for k, v in sorted(ev[name].items(), key=lambda kv: int(kv[0]))]
  return "\n".join(lines)


def load_run(workdir: str, step: int | None = None,
             seed_index: int = 0) -> tuple[config_dict.ConfigDict, nnx.Module, steps.TrainState]:
  """Rebuilds a run from its workdir: (config, model of one seed, restored state of all seeds).

  Args:
    workdir: a directory written by `train_and_evaluate`.
    step: the checkpoint step to restore; None for the newest intact one.
    seed_index: which of the run's `num_seeds` models to return (the state holds all).
  """
  config = workdir_lib.load_config(workdir)
  run = build.build_run(config)
  checkpoints = checkpointing.Checkpoints(
      os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints,
      keep_best=config.keep_best_checkpoints)
  try:
    if step is None:  # The newest intact step (a damaged newer one is named and skipped).
      step, state = checkpoints.restore_latest(run.state)
      if step is None:
        raise FileNotFoundError(f"no checkpoint in {checkpoints.directory}")
    else:
      state = checkpoints.restore(step, run.state)
  finally:
    checkpoints.close()
  params = jax.tree.map(lambda x: x[seed_index], state.params)
  return config, nnx.merge(run.graphdef, params, run.constants), state
