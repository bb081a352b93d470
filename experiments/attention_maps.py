"""Question 6: does attention put its weight on the true dependency source, at any distance?

Runs (reused): the Transformer runs of long_range_copy (one per delay), of long_range_agreement
(a range of distances) and of extrapolation (evaluated beyond the trained distances).
Analysis: on fixed batches with every dependency at distance d, the mean attention weight from
each scored query to its source (`analysis.attention_mass`), per layer and head, against a head
that attends uniformly (1/(t+1)); heatmaps of one example, for each layer's best head.
Figures: mass on the source against distance (best head of each layer, and uniform); heatmaps.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from seqresearch import analyze
from seqresearch import report
from seqresearch.analysis import attention_mass

TITLE = "Attention maps: weight on the true dependency source"
CLAIM = ("Self-attention connects any two positions in one step (O(1) path), so a trained head "
         "can look straight at the source of a dependency however far back it is.")
SWEEPS = ("long_range_copy", "long_range_agreement", "extrapolation")


def _mass(study: report.Study, members, distances_of) -> dict[str, Any]:
  """Merges {(layer, head): {distance: mass}} over runs; records each distance's run."""
  heads: dict[str, dict[str, float]] = {}
  uniform: dict[str, float] = {}
  sources: dict[str, str] = {}
  for member in members:
    restored = analyze.restore(member.workdir)
    distances = [d for d in distances_of(restored) if not analyze.unreachable(restored, d)]
    mass = analyze.attention_mass_by_distance(
        restored, distances, num_examples=study.settings.attention_maps.num_examples)
    for head, by_d in mass["heads"].items():
      heads.setdefault(head, {}).update(by_d)
    uniform.update(mass["uniform"])
    sources.update({str(d): study.relpath(member.workdir) for d in distances})
  best = {d: max(heads, key=lambda h: heads[h][d]) for d in uniform}
  return {"heads": heads, "uniform": uniform, "runs": sources,
          "best": {d: {"head": h, "mass": heads[h][d]} for d, h in best.items()},
          "distances": sorted((int(d) for d in uniform))}


def _spread(low: int, high: int, count: int) -> list[int]:
  return sorted({int(round(x)) for x in np.linspace(low, high, count)})


def run(study: report.Study) -> dict[str, Any]:
  def transformers(sweep_name: str, variant: str = "transformer"):
    return [r for r in study.runs(sweep_name) if r.finished and study.variant(r) == variant]

  copy_runs = transformers("long_range_copy")
  agreement_runs = transformers("long_range_agreement")
  results: dict[str, Any] = {}
  if copy_runs:
    results["copy"] = _mass(study, copy_runs,
                            lambda r: [analyze.trained_distances(r.settings.task)[1]])
  if agreement_runs:
    results["agreement"] = _mass(study, agreement_runs, lambda r: _spread(
        *analyze.trained_distances(r.settings.task),
        study.settings.attention_maps.agreement_points))
  extrapolation = {}
  for variant in ("transformer", "transformer_learned", "transformer_nope"):
    members = transformers("extrapolation", variant)
    if members:
      extrapolation[variant] = _mass(
          study, members, lambda r: list(study.settings.extrapolation.eval_distances))
      extrapolation[variant]["trained"] = list(
          analyze.trained_distances(analyze.restore(members[0].workdir).settings.task))
  results["extrapolation"] = extrapolation
  results["num_examples"] = study.settings.attention_maps.num_examples
  results["heatmap_runs"] = {task: rs[0].workdir for task, rs in
                             (("copy", copy_runs), ("agreement", agreement_runs)) if rs}
  results["runs"] = sorted({p for part in [results.get("copy"), results.get("agreement"),
                                           *extrapolation.values()] if part
                            for p in part["runs"].values()})
  return results


def figures(results: dict[str, Any], out_dir: str) -> list[str]:
  paths = []
  panels = [(k, results[k]) for k in ("copy", "agreement") if k in results]
  panels += [(f"extrapolation, {report.label(k)}", v) for k, v in results["extrapolation"].items()]
  if panels:
    fig, axes = report.figure(ncols=len(panels), width=4.2)
    for ax, (title, part) in zip(axes, panels):
      ds = [str(d) for d in part["distances"]]
      layers = sorted({h.split("H")[0] for h in part["heads"]})
      for layer in layers:
        best_B = [max(m[d] for h, m in part["heads"].items() if h.startswith(layer + "H"))
                  for d in ds]
        ax.plot([int(d) for d in ds], best_B, marker="o", label=f"best head, layer {layer[1:]}")
      ax.plot([int(d) for d in ds], [part["uniform"][d] for d in ds], color="0.4", ls="--",
              label="uniform head")
      if "trained" in part:
        ax.axvspan(*part["trained"], color="0.9", label="trained distances")
      ax.set(xlabel="dependency distance", ylabel="attention mass on the source",
             ylim=(0, 1.05), title=title)
      ax.legend(fontsize=7)
    paths.append(report.save(fig, os.path.join(out_dir, "mass_by_distance.png")))
  for task, workdir in results["heatmap_runs"].items():
    paths += _heatmaps(task, workdir, results[task], results["num_examples"], out_dir)
  return paths


def _heatmaps(task: str, workdir: str, part: dict[str, Any], num_examples: int,
              out_dir: str) -> list[str]:
  """Example 0's weights for the best head of each layer, at the run's trained distance."""
  restored = analyze.restore(workdir)
  distance = analyze.trained_distances(restored.settings.task)[1]
  # The batch `run` measured (same size, so the same fixed batch and compiled program).
  batch, weights = analyze.attention_at_distance(restored, distance, num_examples=num_examples)
  paths = []
  for layer, w_BxHxTxT in enumerate(weights):
    head = max(range(w_BxHxTxT.shape[1]),
               key=lambda h: part["heads"][f"L{layer}H{h}"].get(str(distance), 0.0))
    paths.append(attention_mass.plot_attention(
        w_BxHxTxT[0, head], batch.inputs[0],
        os.path.join(out_dir, f"heatmap_{task}_L{layer}H{head}.png"),
        title=f"{task}, distance {distance}: layer {layer} head {head}"))
  return paths


def tables(results: dict[str, Any]) -> str:
  out = []
  for key in ("copy", "agreement"):
    part = results.get(key)
    if not part:
      continue
    ds = [str(d) for d in part["distances"]]
    heads = sorted(part["heads"])
    rows = [[h] + [report.fmt(part["heads"][h][d]) for d in ds] for h in heads]
    rows.append(["uniform head"] + [report.fmt(part["uniform"][d], ".3f") for d in ds])
    out += [f"{key.capitalize()}: attention mass on the true source by layer (L) and head (H).",
            "", report.markdown_table(["head"] + [f"d = {d}" for d in ds], rows), ""]
  for variant, part in results["extrapolation"].items():
    ds = [str(d) for d in part["distances"]]
    out += [f"Extrapolation, {report.label(variant)} (trained on distances "
            f"{part['trained'][0]} .. {part['trained'][1]}): best head's mass on the source.",
            "", report.markdown_table(
                ["", *[f"d = {d}" for d in ds]],
                [["best head"] + [f"{report.fmt(part['best'][d]['mass'])} "
                                  f"({part['best'][d]['head']})" for d in ds],
                 ["uniform head"] + [report.fmt(part["uniform"][d], ".3f") for d in ds]]), ""]
  return "\n".join(out) if out else "No Transformer run finished."


def verdict(results: dict[str, Any]) -> report.Verdict:
  v = report.Verdict(results)
  for key in ("copy", "agreement"):
    part = results.get(key)
    if not part:
      continue
    near, far = str(part["distances"][0]), str(part["distances"][-1])
    task = "the copy task" if key == "copy" else "agreement"
    v.say(f"On {task}, the Transformer's best head puts "
          f"{v.number(f'{key}.best.{near}.mass')} of its attention on the true source at "
          f"distance {near} and {v.number(f'{key}.best.{far}.mass')} at distance {far} (a "
          f"uniform head: {v.number(f'{key}.uniform.{near}', '.3f')} and "
          f"{v.number(f'{key}.uniform.{far}', '.3f')}).")
    if part["best"][far]["mass"] >= 0.5 * part["best"][near]["mass"] and \
        part["best"][far]["mass"] > 2 * part["uniform"][far]:
      v.say("It finds the source in one hop at every distance measured, as the O(1) path "
            "length allows.")
    else:
      v.contradicts(f"On {key} the mass on the source at distance {far} is less than half "
                    f"that at {near} (or within twice the uniform level): the trained heads do "
                    f"not look straight at the source at long range.")
  for variant, part in results["extrapolation"].items():
    high = part["trained"][1]
    inside = [d for d in part["distances"] if d <= high]
    if not inside:
      continue
    edge, far = str(max(inside)), str(part["distances"][-1])
    base = f"extrapolation.{variant}"
    v.say(f"Trained on distances up to {high}, the {report.label(variant)}'s best head puts "
          f"{v.number(f'{base}.best.{edge}.mass')} on the source at distance {edge} and "
          f"{v.number(f'{base}.best.{far}.mass')} at {far} (uniform "
          f"{v.number(f'{base}.uniform.{far}', '.3f')}).")
  if not v.sentences:
    v.say("No Transformer run finished.")
  return v
