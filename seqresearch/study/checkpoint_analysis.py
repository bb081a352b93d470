"""One run's checkpoint analysis: accuracy beyond the trained distances, gradient path,
attention maps; written as analysis.json and PNG figures (`scripts/analyze.py`).

    checkpoint_analysis.analyze_run("runs/copy-lstm")   # -> runs/copy-lstm/analysis/step-N/

Legend: S seeds, B batch, T time, L layers, H heads.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from seqresearch.analysis import attention_mass
from seqresearch.study import plots
from seqresearch.study import probes
from seqresearch.study import restore as restore_lib
from seqresearch.study import stats

ANALYSIS_FILE = "analysis.json"


def default_distances(restored: restore_lib.Restored) -> list[int]:
  """The trained range's ends and 2x, 4x its longest distance."""
  low, high = restored.settings.task.trained_distances
  return sorted({low, high, 2 * high, 4 * high})


def analyze_run(workdir: str, out_dir: str | None = None, *, step: int | None = None,
                distances: list[int] | None = None, gradient_distance: int | None = None,
                num_examples: int = 32) -> dict[str, Any]:
  """Evaluates, measures the gradient path and (attention models) draws attention maps of a run.

  Writes `analysis.json` (strict JSON: null with a reason where a number is undefined) and PNG
  figures to `out_dir` (default `<workdir>/analysis/step-<step>/`).

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
    The analysis (as written to analysis.json).

  Raises:
    FileNotFoundError: no run or no checkpoint in `workdir`.
    ValueError: `gradient_distance` the task cannot reach.
  """
  restored = restore_lib.restore(workdir, step)
  low, high = restored.settings.task.trained_distances
  gradient_distance = gradient_distance or high
  restore_lib.task_at(restored, gradient_distance)  # refuse an unreachable distance first
  out_dir = out_dir or os.path.join(workdir, "analysis", f"step-{restored.step}")
  os.makedirs(out_dir, exist_ok=True)
  distances = sorted(set(distances or default_distances(restored)))
  skipped = {str(d): r for d in distances if (r := restore_lib.unreachable(restored, d))}
  reachable = [d for d in distances if str(d) not in skipped]
  evals = restore_lib.evaluate_at_distances(restored, reachable)
  result: dict[str, Any] = {
      "workdir": os.path.abspath(workdir), "step": restored.step, "seeds": list(restored.seeds),
      "model": restored.model_name, "task": restored.config.task.name,
      "trained_distances": [low, high],
      "accuracy_by_distance": {
          str(d): stats.seed_summary([m["accuracy"] for m in evals[d]],
                                     examples=evals[d][0]["examples"]) for d in evals},
      "sequence_accuracy_by_distance": {
          str(d): stats.seed_summary([m["sequence_accuracy"] for m in evals[d]],
                                     examples=evals[d][0]["examples"]) for d in evals},
      "examples_by_distance": {str(d): evals[d][0]["examples"] for d in evals},
      "skipped": skipped,
  }
  result["gradient"] = {
      stage: probes.gradient_profile(restored, gradient_distance, num_examples=num_examples,
                                     at_init=stage == "init") for stage in ("trained", "init")}
  figures = []
  if reachable:
    figures.append(_plot_accuracy(result, os.path.join(out_dir, "accuracy_by_distance.png")))
  figures.append(_plot_gradient(result["gradient"], os.path.join(out_dir, "gradient_norm.png")))
  if probes.has_attention(restored) and reachable:
    result["attention"] = probes.attention_mass_by_distance(restored, reachable,
                                                            num_examples=num_examples)
    batch, weights = probes.attention_at_distance(restored, min(reachable), num_examples=1)
    for layer, w_BxHxTxT in enumerate(weights):
      for head in range(w_BxHxTxT.shape[1]):
        figures.append(attention_mass.plot_attention(
            w_BxHxTxT[0, head], batch.inputs[0],
            os.path.join(out_dir, f"attention_L{layer}H{head}.png"),
            title=f"layer {layer} head {head}, distance {min(reachable)}, seed "
                  f"{restored.seeds[0]}, example 0"))
  result["figures"] = [os.path.basename(f) for f in figures]
  result["out_dir"] = os.path.abspath(out_dir)
  stats.write_results(os.path.join(out_dir, ANALYSIS_FILE), result)
  return stats.json_ready(result)


def _plot_accuracy(result: dict[str, Any], path: str) -> str:
  fig, (ax,) = plots.figure()
  acc = result["accuracy_by_distance"]
  ds = sorted(acc, key=int)
  plots.errorbar(ax, result["model"], [int(d) for d in ds], [acc[d] for d in ds])
  low, high = result["trained_distances"]
  ax.axvspan(low, high, color="0.9", label="trained distances")
  plots.integer_ticks(ax, [int(d) for d in ds])
  ax.set(xlabel="dependency distance $k$", ylabel="accuracy", ylim=(0, 1.05),
         title=f"{result['model']} on {result['task']}, step {result['step']}")
  ax.legend()
  return plots.save(fig, path)


def _plot_gradient(gradient: dict[str, Any], path: str) -> str:
  fig, (ax,) = plots.figure()
  for label, profile in gradient.items():
    mean_K = np.asarray([np.nan if v is None else v
                         for v in stats.mean_over_seeds(profile["norms_by_seed"])])
    ax.semilogy(profile["lags"], np.where(mean_K > 0, mean_K, np.nan), label=label)
  ax.axvline(gradient["trained"]["distance"], color="0.5", ls="--", label="source")
  plots.integer_ticks(ax)
  ax.set(xlabel="lag $k$",
         ylabel=r"$\|\partial \ell_t / \partial x_{t-k}\|$ (mean over seeds)")
  ax.legend()
  return plots.save(fig, path)
