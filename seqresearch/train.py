"""The one training loop: `train_and_evaluate(config, workdir)`.

Data flows one way: config -> (task, model, optimizer) -> jitted step -> workdir:
  config.json, metrics.jsonl, tensorboard/, checkpoints/, summary.json.

Exactness: the data of step s is `make_batch(fold_in(data_key, s))` and the running train-metric
sums live in the checkpointed state, so a run killed at any moment and rerun ends bit-identical
to an uninterrupted one. Metrics leave the device only at log, eval and checkpoint steps.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import threading
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint
from flax import nnx
from ml_collections import config_dict

from seqresearch import build
from seqresearch import checkpointing
from seqresearch import configlib
from seqresearch import evaluation
from seqresearch import metric_writer
from seqresearch import models
from seqresearch import progress
from seqresearch import tasks

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or Inf."""


def _config_for_comparison(config_json: dict[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in config_json.items() if k not in configlib.PRESENTATION_FIELDS}


def prepare_workdir(config: config_dict.ConfigDict, workdir: str, restart: bool) -> None:
  """Creates the workdir, or checks that the one there holds a run of this same config.

  Raises:
    ValueError: the workdir holds a run with another config (and restart is False).
  """
  path = os.path.join(workdir, CONFIG_FILE)
  new = json.loads(config.to_json_best_effort())
  if os.path.exists(path) and restart:
    moved = f"{workdir.rstrip('/')}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    os.rename(workdir, moved)
    progress.note(f"--restart: moved the previous run in {workdir} to {moved}")
  elif os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if _config_for_comparison(old) != _config_for_comparison(new):
      diffs = _diff(old, new)
      raise ValueError(
          f"workdir {workdir} holds a run with a different config ({'; '.join(diffs[:5])}). "
          "Use another --workdir, or pass --restart to move the old run aside and start over.")
  os.makedirs(workdir, exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(new, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for key in sorted(set(old) | set(new)):
      if prefix == "" and key in configlib.PRESENTATION_FIELDS:
        continue
      out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
    return out
  return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} there, {new!r} now"]


def init_state(model: nnx.Module,
               tx: optax.GradientTransformation) -> tuple[Any, Any, dict[str, Any]]:
  """Splits the model once into (graphdef, constants, state).

  `state` is the pytree of arrays that trains and is checkpointed; `constants` holds any
  non-parameter variables of the model, which the optimizer must not touch.
  """
  graphdef, params, constants = nnx.split(model, nnx.Param, ...)
  state = {
      "step": jnp.zeros((), jnp.int32),
      "params": params,
      "opt_state": tx.init(params),
      # Running sums of train metrics since the last log line (checkpointed: exact resume).
      "sums": {"loss": jnp.zeros(()), "accuracy": jnp.zeros(()), "grad_norm": jnp.zeros(()),
               "steps": jnp.zeros((), jnp.int32)},
      # First step whose loss was NaN/Inf, or -1.
      "first_nonfinite_step": jnp.full((), -1, jnp.int32),
  }
  return graphdef, constants, state


def make_train_step(graphdef: Any, constants: Any, tx: optax.GradientTransformation,
                    task: Any, batch_size: int, data_key: jax.Array):
  """Returns the jitted `train_step(state) -> state`; the state is donated."""

  def loss_fn(params, batch: tasks.Batch):
    logits_BxTxV = nnx.merge(graphdef, params, constants)(batch.inputs)
    loss, correct, scored = evaluation.loss_and_correct(logits_BxTxV, batch)
    return loss, correct.sum() / jnp.maximum(scored, 1.0)

  def train_step(state):
    step = state["step"]
    batch = tasks.make_batch(jax.random.fold_in(data_key, step), task, batch_size)
    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    sums = state["sums"]
    bad = state["first_nonfinite_step"]
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    return {
        "step": step + 1,
        "params": params,
        "opt_state": opt_state,
        "sums": {"loss": sums["loss"] + loss, "accuracy": sums["accuracy"] + accuracy,
                 "grad_norm": sums["grad_norm"] + grad_norm,
                 "steps": sums["steps"] + 1},
        "first_nonfinite_step": jnp.where((bad < 0) & ~finite, step + 1, bad),
    }

  return jax.jit(train_step, donate_argnums=0)


def _reset_sums(state: dict[str, Any]) -> dict[str, Any]:
  return {**state, "sums": jax.tree.map(jnp.zeros_like, state["sums"])}


def _check_finite(state: dict[str, Any], checkpoints: checkpointing.Checkpoints,
                  eval_loss: float = 0.0) -> None:
  """Raises if the train loss or gradient norm was ever NaN/Inf, or the eval loss is."""
  bad = int(state["first_nonfinite_step"])
  what = "training loss or gradient norm"
  if bad < 0 and not np.isfinite(eval_loss):
    bad, what = int(state["step"]), "evaluation loss"
  if bad >= 0:
    checkpoints.wait()
    last = checkpoints.latest_step()
    where = (f"the last good checkpoint is step {last} in {checkpoints.directory}"
             if last is not None else "no checkpoint was saved before it")
    raise NonFiniteLossError(
        f"{what} became NaN/Inf at step {bad}; {where}. Lower optimizer.learning_rate "
        "or set optimizer.grad_clip_norm, then resume or restart the run.")


def _environment() -> dict[str, Any]:
  device = jax.devices()[0]
  return {
      "versions": {"python": platform.python_version(), "jax": jax.__version__,
                   "flax": flax.__version__, "optax": optax.__version__,
                   "orbax_checkpoint": orbax.checkpoint.__version__},
      "device": {"platform": device.platform, "kind": device.device_kind,
                 "count": jax.device_count()},
  }


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
  """Trains and evaluates one run, resuming from the workdir's latest checkpoint if any.

  Args:
    config: a run config (see `configs/`).
    workdir: where config.json, metrics.jsonl, tensorboard/, checkpoints/, summary.json go.
    restart: move an existing run in `workdir` aside instead of resuming or refusing it.

  Returns:
    The summary (also written to summary.json): final eval metrics, steps, wall time, versions,
    device; `preempted: True` if SIGTERM stopped it early (after saving a checkpoint).
  """
  started = time.time()
  run = build.validate_run(config)  # Fails on a bad config before anything is compiled.
  prepare_workdir(config, workdir, restart)

  root = jax.random.key(config.seed)
  init_key, data_key, eval_key = jax.random.split(root, 3)
  tx = build.make_optimizer(config.optimizer, config.num_train_steps)
  model = models.build_model(run.model, vocab_size=run.vocab_size, rngs=nnx.Rngs(init_key))
  graphdef, constants, state = init_state(model, tx)
  num_params = sum(x.size for x in jax.tree.leaves(state["params"]))

  checkpoints = checkpointing.Checkpoints(
      os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints,
      keep_best=config.keep_best_checkpoints)
  start = checkpoints.latest_step()
  if start is not None:
    state = checkpoints.restore(start, state)
    progress.note(f"Resuming {workdir} from step {start}.")
  writer = metric_writer.MetricWriter(workdir, resume_step=start)
  start = start or 0

  train_step = make_train_step(graphdef, constants, tx, run.task, config.batch_size, data_key)
  evaluate = evaluation.make_evaluator(graphdef, constants, run.task, config.eval_batch_size,
                                       config.num_eval_batches, eval_key)
  last_eval = None
  if start == 0:
    last_eval = evaluate(state["params"])
    writer.write(0, "eval", last_eval)

  total = config.num_train_steps
  bar = progress.Progress(total, start, enabled=config.progress_bar)
  preempted = False
  tick_time, tick_step = time.time(), start
  try:
    with _PreemptionFlag() as preemption:
      for step in range(start + 1, total + 1):
        state = train_step(state)
        bar.advance()
        is_last = step == total
        if step % config.log_every_steps == 0 or is_last:
          _check_finite(state, checkpoints)
          sums = jax.device_get(state["sums"])
          n = max(int(sums["steps"]), 1)
          now = time.time()
          line = {"loss": float(sums["loss"]) / n, "accuracy": float(sums["accuracy"]) / n,
                  "grad_norm": float(sums["grad_norm"]) / n,
                  "steps_per_sec": (step - tick_step) / max(now - tick_time, 1e-9)}
          tick_time, tick_step = now, step
          writer.write(step, "train", line)
          bar.report(step, line)
          state = _reset_sums(state)
        eval_metrics = None
        if step % config.eval_every_steps == 0 or is_last:
          last_eval = eval_metrics = evaluate(state["params"])
          _check_finite(state, checkpoints, eval_metrics["loss"])
          writer.write(step, "eval", eval_metrics)
          bar.report(step, eval_metrics, split="eval")
        if step % config.checkpoint_every_steps == 0 or is_last or preemption.set:
          _check_finite(state, checkpoints)  # Never save a non-finite state.
          best = {checkpointing.BEST_METRIC: eval_metrics[checkpointing.BEST_METRIC]} \
              if eval_metrics else None
          checkpoints.save(step, state, metrics=best)
        if preemption.set and not is_last:
          progress.note(f"SIGTERM at step {step}: checkpoint saved; exiting.")
          preempted = True
          break
  finally:
    bar.close()
    checkpoints.close()
    writer.close()

  if last_eval is None:  # Resumed at the final step: its eval line is already in the file.
    evals = [m for m in metric_writer.read_metrics(workdir) if m["split"] == "eval"]
    last_eval = {k: v for k, v in evals[-1].items() if k not in ("step", "split")}
  summary = {
      "final_step": int(state["step"]),
      "num_train_steps": total,
      "preempted": preempted,
      "eval": last_eval,
      "num_params": int(num_params),
      "wall_time_sec": time.time() - started,
      **_environment(),
  }
  if not preempted:
    tmp = os.path.join(workdir, SUMMARY_FILE + ".tmp")
    with open(tmp, "w") as f:
      json.dump(summary, f, indent=2)
    os.replace(tmp, os.path.join(workdir, SUMMARY_FILE))
  return summary


def format_summary(summary: dict[str, Any]) -> str:
  """A human-readable end-of-run report: final metrics and accuracy by distance."""
  ev = summary["eval"]
  lines = [f"Finished step {summary['final_step']} in {summary['wall_time_sec']:.0f}s "
           f"({summary['num_params']:,} parameters, {summary['device']['kind']}).",
           f"eval loss {ev['loss']:.4f}  accuracy {ev['accuracy']:.4f}  "
           f"sequence accuracy {ev['sequence_accuracy']:.4f}"]
  if "memoryless_baseline_loss" in ev:
    lines.append(f"memoryless baseline loss {ev['memoryless_baseline_loss']:.4f}")
  for name in ("accuracy_by_distance", "accuracy_by_attractors"):
    if ev.get(name):
      lines.append(f"{name.replace('_', ' ')}:")
      lines += [f"  {k:>6}: {v:.4f}" for k, v in sorted(ev[name].items(), key=lambda kv: int(kv[0]))]
  return "\n".join(lines)


def load_run(workdir: str, step: int | None = None) -> tuple[config_dict.ConfigDict, nnx.Module,
                                                               dict[str, Any]]:
  """Rebuilds a run from its workdir: (config, model with restored params, restored state).

  Args:
    workdir: a directory written by `train_and_evaluate`.
    step: the checkpoint step to restore; None for the latest.
  """
  with open(os.path.join(workdir, CONFIG_FILE)) as f:
    config = config_dict.ConfigDict(json.load(f))
  run = build.validate_run(config)
  tx = build.make_optimizer(config.optimizer, config.num_train_steps)
  model = models.build_model(run.model, vocab_size=run.vocab_size, rngs=nnx.Rngs(0))
  graphdef, constants, target = init_state(model, tx)
  checkpoints = checkpointing.Checkpoints(
      os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints,
      keep_best=config.keep_best_checkpoints)
  try:
    step = checkpoints.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {checkpoints.directory}")
    state = checkpoints.restore(step, target)
  finally:
    checkpoints.close()
  return config, nnx.merge(graphdef, state["params"], constants), state
