"""Question 3: does the gradient reaching back k steps vanish with k through a recurrence only?

Runs: the long_range_copy sweep's runs at its longest delay (one per variant), reused.
Analysis (`seqresearch.study.probes.gradient_profile`): on a fixed copy batch at that distance
d, ‖∂ℓ_t/∂x_{t-k}‖ for every lag k, where t is the first recall position and x the token
embeddings, for every seed at initialisation (the run's own init key) and after training.
Per seed: the fitted per-step decay rate r (norm ≈ C·e^{r·k} over k = 1 .. d); log10 of the
absolute norm at the true source (k = d); and log10 of the source's norm over a neutral level,
the median over the intermediate lags 2 .. d-1 (lag 1 is the delimiter, which draws several
times a blank's gradient, so it is no neutral normaliser). Mean and 95% CI over seeds.
Verdict: a recurrent variant is said to pass less gradient to the source than attention only
where both measures (absolute and normalised) say so by non-overlapping intervals; where they
disagree the verdict is undecided.
Figure: mean norm against lag, at init and trained, per variant.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from seqresearch.study import markdown, plots, probes, restore, runner, stats, variants, verdicts

TITLE = "Gradient path: ‖∂ℓ_t/∂x_{t−k}‖ versus k"
CLAIM = ("A recurrent layer's maximum path length is O(n), so the gradient from a loss to an "
         "input k steps back passes through k Jacobians and vanishes with k; through "
         "self-attention the path is O(1) and the gradient need not decay.")
SWEEPS = ("long_range_copy",)
STAGES = ("init", "trained")
MEASURES = ("log10_source_norm", "log10_source_over_neutral")


def _summarise(profile: dict[str, Any]) -> dict[str, Any]:
  return {"lags": profile["lags"], "mean_norm": stats.mean_over_seeds(profile["norms_by_seed"]),
          "decay_rate": stats.seed_summary(profile["decay_rate_by_seed"]),
          **{m: stats.seed_summary(profile[f"{m}_by_seed"]) for m in MEASURES},
          # Seeds whose gradient at the source is exactly 0 (no path reaches it): log10 = -inf.
          "zero_source_seeds": sum(x == 0.0 for x in profile["source_norm_by_seed"]),
          "num_seeds": len(profile["source_norm_by_seed"])}


def _unreached(stage_results: dict[str, Any]) -> bool:
  """Whether the source's gradient is exactly 0 in every seed (older results: False)."""
  zero = stage_results.get("zero_source_seeds", 0)
  return zero > 0 and zero == stage_results.get("num_seeds")


UNREACHED = "−∞ (exactly 0)"


def run(study: runner.Study) -> dict[str, Any]:
  runs = study.runs("long_range_copy")
  longest = max((dict(r.overrides)["task.max_delay"] for r in runs), default=0)
  chosen = [r for r in runs if dict(r.overrides)["task.max_delay"] == longest]
  found = {}
  for member in chosen:
    if not member.finished:
      continue
    restored = restore.restore(member.workdir)
    distance = restored.settings.task.trained_distances[1]
    found[study.variant(member)] = {
        "distance": distance, "step": restored.step, "run": study.relpath(member.workdir),
        **{stage: _summarise(probes.gradient_profile(
            restored, distance, num_examples=study.settings.gradient_path.num_examples,
            at_init=stage == "init")) for stage in STAGES}}
  return {"variants": found, "runs": sorted(v["run"] for v in found.values()),
          "failed_runs": runner.failed_runs(study, chosen)}


def figures(results: dict[str, Any], out_dir: str) -> list[str]:
  found = results["variants"]
  if not found:
    return []
  fig, axes = plots.figure(ncols=2, width=5.5)
  for ax, stage in zip(axes, STAGES):
    for name in variants.ordered(found):
      norm_K = np.asarray([np.nan if x is None else x for x in found[name][stage]["mean_norm"]])
      style = variants.style(name)
      ax.semilogy(found[name][stage]["lags"], np.where(norm_K > 0, norm_K, np.nan),
                  color=style["color"], ls=style["ls"], label=style["label"])
    distance = next(iter(found.values()))["distance"]
    ax.axvline(distance, color="0.4", ls="--", label="true source")
    plots.integer_ticks(ax)
    ax.set(xlabel="lag $k$ (steps back from the first recall)",
           ylabel=r"$\|\partial \ell_t / \partial x_{t-k}\|$ (mean over seeds)",
           title="at initialisation" if stage == "init" else "after training")
    ax.legend(fontsize=7)
  return [plots.save(fig, os.path.join(out_dir, "gradient_path.png"))]


def tables(results: dict[str, Any]) -> str:
  found = results["variants"]
  if not found:
    return "No run finished."
  rows = [[variants.variant(n).label, found[n]["distance"]] +
          [UNREACHED if key in MEASURES and _unreached(found[n][stage])
           else stats.pm(found[n][stage][key], spec)
           for stage in STAGES for key, spec in (("decay_rate", ".3f"),
                                                 ("log10_source_norm", ".1f"),
                                                 ("log10_source_over_neutral", ".1f"))]
          for n in variants.ordered(found)]
  headers = ["model", "distance d"] + [f"{what} ({stage})" for stage in STAGES
                                       for what in ("r", "log10 ‖g‖ at source",
                                                    "log10 source / neutral")]
  return ("Per-step decay rate r of the gradient norm (norm ≈ C·e^{r·k}; r = 0: no decay); "
          "log10 of the gradient norm at the true source d steps back; log10 of that norm over "
          "the median norm of the intermediate lags 2 .. d-1 (a neutral level: lag 1 is the "
          "delimiter). At initialisation and after training, mean ± 95% CI over seeds. "
          f"{UNREACHED}: the gradient at the source is exactly 0 in every seed, no path "
          "reaches it (the source lies beyond a convolution's or a local window's reach).\n\n" +
          markdown.table(headers, rows))


def verdict(results: dict[str, Any]) -> verdicts.Verdict:
  v = verdicts.Verdict(results)
  found = results["variants"]
  if not found:
    v.say("No long_range_copy run at the longest delay finished.")
    return v
  names = variants.ordered(found)
  label = lambda name: variants.variant(name).label  # noqa: E731
  distance = found[names[0]]["distance"]

  def log10(n: str, stage: str, measure: str) -> str:
    if _unreached(found[n][stage]):
      return UNREACHED
    return v.number(f"variants.{n}.{stage}.{measure}.mean", ".1f")

  for stage in STAGES:
    when = "At initialisation" if stage == "init" else "After training"
    v.say(f"{when}, the gradient changes by a factor e^r per step back, with r = " +
          ", ".join(f"{v.pm(f'variants.{n}.{stage}.decay_rate', '.3f')} ({label(n)})"
                    for n in names) +
          f"; at the true source, {distance} steps back, log10 of its norm is " +
          ", ".join(f"{log10(n, stage, 'log10_source_norm')} ({label(n)})" for n in names) +
          ", and log10 of its ratio to the neutral level is " +
          ", ".join(f"{log10(n, stage, 'log10_source_over_neutral')} ({label(n)})"
                    for n in names) + ".")
    unreached = [n for n in names if _unreached(found[n][stage])]
    if unreached:
      v.say(f"{when}, no gradient at all reaches the source through " +
            ", ".join(f"the {label(n)}" for n in unreached) + " (exactly 0 in every seed): "
            "it lies beyond their reach, as their receptive field predicts.")
    _compare_stage(v, found, names, stage, when, distance)
  return v


def _compare_stage(v: verdicts.Verdict, found: dict[str, Any], names: list[str], stage: str,
                   when: str, distance: int) -> None:
  """Recurrent variants against the best non-recurrent one, where both measures agree."""
  label = lambda name: variants.variant(name).label  # noqa: E731
  parallel = [n for n in names if variants.variant(n).is_attention
              and found[n][stage]["log10_source_over_neutral"]["mean"] is not None]
  if not parallel:
    return
  ref = max(parallel, key=lambda n: found[n][stage]["log10_source_over_neutral"]["mean"])
  less, not_less, undecided = [], [], []
  for n in names:
    if not variants.variant(n).is_recurrent:
      continue
    outcomes = {stats.compare(found[n][stage][m], found[ref][stage][m]) for m in MEASURES}
    if outcomes == {"lower"}:
      less.append(n)
    elif outcomes <= {"higher", "indistinguishable"}:
      not_less.append(n)
    else:
      undecided.append(n)
  if less:
    v.say(f"{when}, the source receives less gradient through " +
          ", ".join(f"the {label(n)}" for n in less) + f" than through the {label(ref)}, by "
          "both the absolute and the normalised measure (95% intervals apart), as the O(n) "
          "path length predicts.")
  if not_less:
    v.contradicts(f"{when}, the gradient at the source {distance} steps back is not weaker "
                  f"through " + ", ".join(f"the {label(n)}" for n in not_less) +
                  f" than through the {label(ref)}, by both the absolute and the normalised "
                  f"measure: a recurrence need not make it vanish.")
  if undecided:
    v.say(f"{when}, undecided at this scale for " + ", ".join(f"the {label(n)}" for n in
                                                              undecided) +
          ": the absolute and normalised measures disagree, or the intervals are missing "
          "(more seeds would decide).")
