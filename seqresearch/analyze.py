"""Checkpoint analysis: restore a run, then probe it where it was not trained.

    restored = analyze.restore("runs/copy-lstm")            # every seed, latest checkpoint
    analyze.evaluate_at_distances(restored, [20, 80, 160])  # {distance: [metrics of seed k]}
    analyze.gradient_profile(restored, 80)                  # ‖∂loss_t/∂x_{t-k}‖ by lag k
    analyze.attention_at_distance(restored, 80)             # Transformer weights, per layer
    analyze.analyze_run("runs/copy-lstm")                    # all of it -> JSON and PNG

Works on any workdir of `train.train_and_evaluate`, single- or multi-seed: the model is rebuilt
from config.json by `train.load_run`, and evaluating "at distance d" means the run's own task
with every dependency at distance d (copy: delay d - L; agreement: subject-verb distance d).
Evaluation computes the runner's own metrics (`evaluation.batch_sums`, `evaluation.summarize`)
on fixed batches shared by every seed and run.

Legend: K seeds, B batch, T time, L layers, H heads.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import config_dict

from seqresearch import build
from seqresearch import evaluation
from seqresearch import models
from seqresearch import steps
from seqresearch import tasks
from seqresearch import train
from seqresearch import workdir as workdir_lib
from seqresearch.analysis import attention_mass
from seqresearch.analysis import fits
from seqresearch.analysis import gradient_path

ANALYSIS_FILE = "analysis.json"
PROBE_SEED = 20170612  # key of the evaluation and probe batches (shared by every run)


@dataclasses.dataclass(frozen=True)
class Restored:
  """A run's config and the parameters of all its seeds, at one checkpoint step."""

  workdir: str
  step: int
  config: config_dict.ConfigDict
  settings: build.RunSettings
  graphdef: Any
  constants: Any
  params_K: Any  # the seeds' parameters, leading axis K
  seeds: tuple[int, ...]

  def model(self, seed_index: int = 0) -> nnx.Module:
    """The trained model of seed `seeds[seed_index]`."""
    params = jax.tree.map(lambda x: x[seed_index], self.params_K)
    return nnx.merge(self.graphdef, params, self.constants)

  def initial_model(self, seed_index: int = 0) -> nnx.Module:
    """The same seed's model at initialisation: built from the key its training started from."""
    key = steps.seed_keys(self.config.seed, self.config.num_seeds)["init"][seed_index]
    return models.build_model(self.settings.model, vocab_size=self.settings.vocab_size,
                              rngs=nnx.Rngs(key))

  @property
  def is_transformer(self) -> bool:
    return isinstance(self.settings.model, models.TransformerSettings)


def restore(workdir: str, step: int | None = None) -> Restored:
  """Rebuilds the run in `workdir` from config.json and its checkpoint (None: the latest).

  Cached per process: the experiments of a report restore the same runs several times. A new
  checkpoint changes the checkpoint directory's mtime, which is part of the key.
  """
  checkpoints = os.path.join(workdir, "checkpoints")
  stamp = os.stat(checkpoints).st_mtime_ns if os.path.isdir(checkpoints) else 0
  return _restore(os.path.abspath(workdir), step, stamp)


@functools.lru_cache(maxsize=32)
def _restore(workdir: str, step: int | None, stamp: int) -> Restored:
  del stamp  # only part of the cache key
  config, model, state = train.load_run(workdir, step)
  graphdef, _, constants = nnx.split(model, nnx.Param, ...)
  return Restored(
      workdir=workdir, step=int(np.max(np.asarray(state["step"]))), config=config,
      settings=build.validate_run(config), graphdef=graphdef, constants=constants,
      params_K=state["params"],
      seeds=tuple(config.seed + k for k in range(config.num_seeds)))


def trained_distances(task: Any) -> tuple[int, int]:
  """(shortest, longest) dependency distance the task's settings produce."""
  if isinstance(task, tasks.CopySettings):
    return task.min_delay + task.copy_length, task.max_delay + task.copy_length
  return task.min_distance, task.max_distance


def task_at_distance(task: Any, distance: int) -> Any:
  """The run's task with every dependency at `distance`.

  Raises:
    ValueError: the task cannot put a dependency there (copy: distance <= L; agreement:
      too short for the modifiers), naming the distance and what is allowed.
  """
  if isinstance(task, tasks.CopySettings):
    if distance <= task.copy_length:
      raise ValueError(f"distance {distance}: the copy task's distances are delay + L, so "
                       f"they must be > L = {task.copy_length}.")
    delay = distance - task.copy_length
    return dataclasses.replace(task, min_delay=delay, max_delay=delay)
  try:
    return dataclasses.replace(task, min_distance=distance, max_distance=distance)
  except ValueError as e:
    raise ValueError(f"distance {distance}: {e}") from None


def unreachable(restored: Restored, distance: int) -> str | None:
  """Why the run cannot be evaluated at `distance`, or None if it can."""
  try:
    task = task_at_distance(restored.settings.task, distance)
  except ValueError as e:
    return str(e)
  if restored.is_transformer and task.seq_len > restored.settings.model.max_len:
    return (f"distance {distance} needs sequences of {task.seq_len} tokens but the "
            f"Transformer's model.max_len is {restored.settings.model.max_len}; train with a "
            f"larger model.max_len to evaluate there.")
  return None


def evaluate_at_distances(restored: Restored, distances: list[int], *,
                          batch_size: int | None = None,
                          num_batches: int | None = None) -> dict[int, list[dict[str, Any]]]:
  """Evaluates every seed on the run's task with all dependencies at each distance.

  The metrics are the runner's own (`evaluation.batch_sums`, then `evaluation.summarize`). The
  examples are fixed per (task, distance) and shared by every seed and run (`probe_batches`),
  so models are compared on the same sequences.

  Args:
    restored: from `restore`.
    distances: where to evaluate; each must be reachable (see `unreachable`).
    batch_size, num_batches: evaluation set size; default: the run's eval settings.

  Returns:
    {distance: [the eval metrics of seed k]} (accuracy, sequence_accuracy, loss, ...).
  """
  out = {}
  for distance in distances:
    task = _reachable_task(restored, distance)
    batches = probe_batches(task, batch_size or restored.config.eval_batch_size,
                            num_batches or restored.config.num_eval_batches)
    sums = jax.device_get(_eval_sums(restored.graphdef, restored.constants, restored.params_K,
                                     batches, task.max_distance + 1))
    out[int(distance)] = [evaluation.summarize(jax.tree.map(lambda x: x[k], sums), task)
                          for k in range(len(restored.seeds))]
  return out


@functools.partial(jax.jit, static_argnums=(0, 4))
def _eval_sums(graphdef, constants, params_K, batches, num_buckets: int):
  """Summed evaluation statistics of every seed (axis 0) over the stacked batches."""
  def one_batch(params, batch):
    logits_BxTxV = nnx.merge(graphdef, params, constants)(batch.inputs)
    return evaluation.batch_sums(logits_BxTxV, batch, num_buckets)

  def one_seed(params):
    per_batch = jax.vmap(one_batch, in_axes=(None, 0))(params, batches)
    return jax.tree.map(lambda x: x.sum(axis=0), per_batch)

  return jax.vmap(one_seed)(params_K)


@functools.lru_cache(maxsize=64)
def probe_batches(task: Any, batch_size: int, num_batches: int) -> tasks.Batch:
  """`num_batches` fixed batches of `task`, stacked on a leading axis (cached per process)."""
  keys = jax.random.split(jax.random.key(PROBE_SEED), num_batches)
  return jax.jit(jax.vmap(lambda key: tasks.make_batch(key, task, batch_size)))(keys)


def _reachable_task(restored: Restored, distance: int) -> Any:
  reason = unreachable(restored, distance)
  if reason:
    raise ValueError(reason)
  return task_at_distance(restored.settings.task, distance)


def probe_batch(restored: Restored, distance: int, num_examples: int) -> tasks.Batch:
  """A fixed batch of the run's task with every dependency at `distance`."""
  batches = probe_batches(_reachable_task(restored, distance), num_examples, 1)
  return jax.tree.map(lambda x: x[0], batches)


def gradient_profile(restored: Restored, distance: int, *, num_examples: int = 32,
                     at_init: bool = False) -> dict[str, Any]:
  """‖∂loss_t/∂x_{t-k}‖ by lag k for every seed, where t is each example's first scored position.

  The dependency source lies at lag k = distance. The per-step decay rate r
  (norm ≈ C·exp(r·k)) is fitted over lags 1 .. distance.

  Returns:
    {'distance', 'lags', 'norms_by_seed' [K][lags], 'decay_rate_by_seed' [K],
     'source_ratio_by_seed' [K]: norm at lag `distance` over norm at lag 1}.
  """
  batch = probe_batch(restored, distance, num_examples)
  positions_B, targets_B, _ = gradient_path.scored_positions(batch, "first")
  num_lags = int(positions_B.min()) + 1  # every example reaches back this far
  lags_K = np.arange(num_lags)
  norms, rates, ratios = [], [], []
  for k in range(len(restored.seeds)):
    model = restored.initial_model(k) if at_init else restored.model(k)
    norm_K = gradient_path.gradient_norm_by_distance(
        model, batch.inputs, jnp.asarray(positions_B), jnp.asarray(targets_B),
        num_lags=num_lags)
    fit_K = slice(1, distance + 1)
    rates.append(_safe(lambda: gradient_path.fit_decay_rate(lags_K[fit_K], norm_K[fit_K])))
    ratios.append(float(norm_K[distance] / norm_K[1]) if norm_K[1] > 0 else float("nan"))
    norms.append([float(v) for v in norm_K])
  return {"distance": int(distance), "lags": lags_K.tolist(), "norms_by_seed": norms,
          "decay_rate_by_seed": rates, "source_ratio_by_seed": ratios}


def _safe(fn) -> float:
  try:
    return float(fn())
  except ValueError:  # fewer than two finite, positive points to fit
    return float("nan")


def attention_at_distance(restored: Restored, distance: int, *, num_examples: int = 32,
                          seed_index: int = 0) -> tuple[tasks.Batch, list[np.ndarray]]:
  """(batch, [w_BxHxTxT per layer]) of one seed's Transformer on a batch at `distance`."""
  if not restored.is_transformer:
    raise ValueError(f"{restored.workdir} holds a {restored.settings.model.cell} model; "
                     "attention maps need a Transformer.")
  batch = probe_batch(restored, distance, num_examples)
  graphdef, state = nnx.split(restored.model(seed_index))
  weights = _attention_weights(graphdef, state, batch.inputs)
  return batch, [np.asarray(w) for w in weights]


@functools.partial(jax.jit, static_argnums=0)
def _attention_weights(graphdef, state, tokens_BxT):
  return nnx.merge(graphdef, state)(tokens_BxT, return_attention=True)[1]


def attention_mass_by_distance(restored: Restored, distances: list[int], *,
                               num_examples: int = 32, seed_index: int = 0
                               ) -> dict[str, Any]:
  """Mean attention weight on the true source, per (layer, head) and distance, and chance.

  Returns:
    {'heads': {'L0H1': {distance: mass}}, 'uniform': {distance: mass of a uniform causal
     head}} (distances as strings, for JSON).
  """
  heads: dict[str, dict[str, float]] = {}
  uniform: dict[str, float] = {}
  for distance in distances:
    batch, weights = attention_at_distance(restored, distance, num_examples=num_examples,
                                           seed_index=seed_index)
    by_head = attention_mass.mass_on_source_by_layer(weights, batch.weights, batch.distance)
    for (layer, head), by_d in by_head.items():
      heads.setdefault(f"L{layer}H{head}", {}).update({str(d): m for d, m in by_d.items()})
    uniform.update({str(d): m for d, m in
                    attention_mass.uniform_mass(batch.weights, batch.distance).items()})
  return {"heads": heads, "uniform": uniform}


def stat(values: list[float]) -> dict[str, Any]:
  """{'mean', 'ci95', 'min', 'max', 'per_seed'}: the mean over seeds with its 95% t interval
  half-width (NaN for one seed), and the worst and best seed."""
  finite = [v for v in values if np.isfinite(v)]
  mean, half = fits.mean_ci(finite) if finite else (float("nan"), float("nan"))
  return {"mean": mean, "ci95": half, "min": min(finite, default=float("nan")),
          "max": max(finite, default=float("nan")), "per_seed": [float(v) for v in values]}


def default_distances(restored: Restored) -> list[int]:
  """The trained range's ends and 2x, 4x its longest distance."""
  low, high = trained_distances(restored.settings.task)
  return sorted({low, high, 2 * high, 4 * high})


def analyze_run(workdir: str, out_dir: str | None = None, *, step: int | None = None,
                distances: list[int] | None = None, gradient_distance: int | None = None,
                num_examples: int = 32) -> dict[str, Any]:
  """Evaluates, measures the gradient path and (Transformers) dumps attention maps of a run.

  Writes `analysis.json` and PNG figures to `out_dir` (default
  `<workdir>/analysis/step-<step>/`).

  Args:
    workdir: a run directory.
    out_dir: where to write.
    step: checkpoint step; None for the latest.
    distances: where to evaluate accuracy; default `default_distances`. Distances the model
      cannot reach (a Transformer's max_len) are listed under 'skipped' with the reason.
    gradient_distance: the dependency distance of the gradient-path batch; default the
      longest trained distance.
    num_examples: examples of the gradient and attention batches.

  Returns:
    The analysis (also written to analysis.json).
  """
  restored = restore(workdir, step)
  out_dir = out_dir or os.path.join(workdir, "analysis", f"step-{restored.step}")
  os.makedirs(out_dir, exist_ok=True)
  distances = sorted(set(distances or default_distances(restored)))
  skipped = {str(d): r for d in distances if (r := unreachable(restored, d))}
  reachable = [d for d in distances if str(d) not in skipped]
  evals = evaluate_at_distances(restored, reachable)
  low, high = trained_distances(restored.settings.task)
  result: dict[str, Any] = {
      "workdir": os.path.abspath(workdir), "step": restored.step, "seeds": list(restored.seeds),
      "model": restored.config.model.name, "task": restored.config.task.name,
      "trained_distances": [low, high],
      "accuracy_by_distance": {str(d): stat([m["accuracy"] for m in evals[d]]) for d in evals},
      "sequence_accuracy_by_distance": {
          str(d): stat([m["sequence_accuracy"] for m in evals[d]]) for d in evals},
      "skipped": skipped,
  }
  gradient_distance = gradient_distance or high
  result["gradient"] = {
      "trained": gradient_profile(restored, gradient_distance, num_examples=num_examples),
      "init": gradient_profile(restored, gradient_distance, num_examples=num_examples,
                               at_init=True)}
  figures = [_plot_accuracy(result, os.path.join(out_dir, "accuracy_by_distance.png")),
             _plot_gradient(result["gradient"], os.path.join(out_dir, "gradient_norm.png"))]
  if restored.is_transformer:
    result["attention"] = attention_mass_by_distance(
        restored, reachable, num_examples=num_examples)
    batch, weights = attention_at_distance(restored, min(reachable), num_examples=1)
    for layer, w_BxHxTxT in enumerate(weights):
      for head in range(w_BxHxTxT.shape[1]):
        figures.append(attention_mass.plot_attention(
            w_BxHxTxT[0, head], batch.inputs[0],
            os.path.join(out_dir, f"attention_L{layer}H{head}.png"),
            title=f"layer {layer} head {head}, distance {min(reachable)}, seed "
                  f"{restored.seeds[0]}"))
  result["figures"] = [os.path.basename(f) for f in figures]
  result["out_dir"] = os.path.abspath(out_dir)
  workdir_lib.write_json(os.path.join(out_dir, ANALYSIS_FILE), result)
  return result


def _figure(ncols: int = 1):
  # Agg canvas directly: no pyplot state, no display, safe in threads and tests.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(5.0 * ncols, 3.6))
  FigureCanvasAgg(fig)
  return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _plot_accuracy(result: dict[str, Any], path: str) -> str:
  fig, (ax,) = _figure()
  acc = result["accuracy_by_distance"]
  ds = sorted(acc, key=int)
  ax.errorbar([int(d) for d in ds], [acc[d]["mean"] for d in ds],
              yerr=[np.nan_to_num(acc[d]["ci95"]) for d in ds], marker="o", capsize=3)
  low, high = result["trained_distances"]
  ax.axvspan(low, high, color="0.9", label="trained distances")
  ax.set(xlabel="dependency distance", ylabel="accuracy", ylim=(0, 1.05),
         title=f"{result['model']} on {result['task']}, step {result['step']}")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def _plot_gradient(gradient: dict[str, Any], path: str) -> str:
  fig, (ax,) = _figure()
  for label, profile in gradient.items():
    mean_L = np.nanmean(np.asarray(profile["norms_by_seed"], np.float64), axis=0)
    ax.semilogy(profile["lags"], np.where(mean_L > 0, mean_L, np.nan), label=label)
  ax.axvline(gradient["trained"]["distance"], color="0.5", ls="--", label="source")
  ax.set(xlabel="lag k", ylabel="‖∂loss_t / ∂x_{t-k}‖ (mean over seeds)")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path
