"""Question 1: does accuracy fall with dependency distance for recurrent models, not for attention?

Runs (configs/study.py):
  long_range_copy       one run per variant (every model the scale compares, plus explicit
                        variants such as the LSTM with chrono init) and copy delay T
                        (distance T + L).
  long_range_agreement  one run per variant over a range of subject-verb distances with 0 ..
                        max_nouns attractors (balanced: no shortcut beats chance).
Analysis: each run's final evaluation per seed (summary.json `eval_by_seed`): accuracy by
distance and by attractor count, mean and 95% t interval over the seeds (seeds that are not
finite counted); the copy loss over the memoryless baseline L·ln K / (T + 2L) (1 = remembers
nothing).
Figures: copy accuracy and loss against distance; agreement by distance and by attractors.
The verdict's tests: experiments/long_range_verdict.py.
"""

from __future__ import annotations

import os
from typing import Any

from seqresearch import build
from seqresearch import workdir as workdir_lib
from seqresearch.study import markdown, plots, runner, state_size, stats, variants

from experiments import long_range_verdict

TITLE = "Long-range dependencies: accuracy versus distance"
CLAIM = ("A recurrent layer's path between two positions grows as O(n), self-attention's is "
         "O(1), so long-range dependencies are easy for attention and hard for RNNs/LSTMs. "
         "Checked on the copy task over delays and on subject-verb agreement over distance and "
         "attractor count, with two reviewers' caveats: the LSTM's initialisation (forget bias "
         "1, chrono init; Tallec & Ollivier 2018) and LSTMs beating Transformers on agreement "
         "with attractors (Tran et al. 2018).")
SWEEPS = ("long_range_copy", "long_range_agreement")
SOLVED = long_range_verdict.SOLVED  # accuracy from which a cell counts as learnt
verdict = long_range_verdict.verdict  # the experiment's verdict


def _per_seed(summary: dict[str, Any]) -> list[dict[str, Any]]:
  return [summary["eval_by_seed"][k] for k in sorted(summary["eval_by_seed"], key=int)]


def _chance(run) -> float:
  return build.task_settings(workdir_lib.load_config(run.workdir).task).chance_accuracy


def _eval_examples(run) -> int:
  """Examples of the run's final evaluation, per seed."""
  config = workdir_lib.load_config(run.workdir)
  return int(config.eval_batch_size * config.num_eval_batches)


def _copy(study: runner.Study) -> dict[str, Any]:
  runs = study.runs("long_range_copy")
  found: dict[str, dict[str, Any]] = {}
  chance = None
  for run in runs:
    if not run.finished:
      continue
    evals = _per_seed(runner.run_summary(run))
    chance = _chance(run)
    baseline = evals[0]["memoryless_baseline_loss"]
    for d in evals[0]["accuracy_by_distance"]:  # one distance per fixed-delay run
      found.setdefault(study.variant(run), {})[d] = {
          # One distance per run: every evaluation example sits in this cell.
          "accuracy": stats.seed_summary([m["accuracy_by_distance"][d] for m in evals],
                                         examples=_eval_examples(run)),
          "sequence_accuracy": stats.seed_summary([m["sequence_accuracy"] for m in evals],
                                                  examples=_eval_examples(run)),
          "loss": stats.seed_summary([m["loss"] for m in evals]),
          "baseline_loss": baseline,
          "loss_over_baseline": stats.seed_summary([m["loss"] / baseline for m in evals]),
          "seeds_solved": sum((m["accuracy_by_distance"][d] or 0.0) >= SOLVED for m in evals),
          "num_seeds": len(evals),
          "run": study.relpath(run.workdir),
      }
  distances = sorted({int(d) for v in found.values() for d in v})
  return {"chance": chance, "distances": distances, "variants": found,
          "failed_runs": runner.failed_runs(study, runs)}


def _agreement(study: runner.Study) -> dict[str, Any]:
  runs = study.runs("long_range_agreement")
  width = study.settings.long_range.agreement_bin_width
  found = {}
  chance = bins = None
  for run in runs:
    if not run.finished:
      continue
    evals = _per_seed(runner.run_summary(run))
    chance = _chance(run)
    task = workdir_lib.load_config(run.workdir).task
    low, high = task.min_distance, task.max_distance
    bins = stats.distance_bins(low, high, width)

    def by(metric: str) -> dict[str, Any]:
      return {k: stats.seed_summary([m[metric][k] for m in evals if k in m[metric]])
              for k in sorted(evals[0][metric], key=int)}

    examples = _eval_examples(run)
    per_distance = examples / (high - low + 1)  # distances are drawn uniformly per example
    binned = stats.binned([m["accuracy_by_distance"] for m in evals], bins)
    found[study.variant(run)] = {
        "accuracy": stats.seed_summary([m["accuracy"] for m in evals], examples=examples),
        # Examples per seed, and per distance cell if the distances are drawn uniformly (the
        # per-cell counts are not in summary.json): cells below 500 are marked in the table.
        "eval_examples": examples,
        "expected_examples_per_distance": per_distance,
        "seeds_solved": sum(m["accuracy"] >= SOLVED for m in evals),
        "num_seeds": len(evals),
        # Per single distance only where the cells are not binned: binned, each distance has
        # about 1/width of a cell's examples (below the 500 a reported cell needs), and the
        # per-distance accuracy of each seed stays in the run's summary.json.
        **({"by_distance": by("accuracy_by_distance")} if width == 1 else {}),
        # The reported distance cells: bins of `agreement_bin_width` distances, each with its
        # expected number of examples (>= 500 at the scales that state verdicts).
        "by_distance_bin": {
            label: stats.seed_summary(values, examples=int(per_distance * (hi - lo + 1)))
            for (lo, hi), (label, values) in zip(
                [b for b in bins if stats.bin_label(*b) in binned], binned.items())},
        "seeds_solved_by_distance_bin": {
            label: sum(x is not None and x >= SOLVED for x in values)
            for label, values in binned.items()},
        "by_attractors": by("accuracy_by_attractors"),
        "run": study.relpath(run.workdir),
    }
  return {"chance": chance, "variants": found, "bin_width": width,
          "bins": [list(b) for b in bins] if bins else [],
          "failed_runs": runner.failed_runs(study, runs)}


def _models(study: runner.Study) -> dict[str, dict[str, Any]]:
  """Per variant and task, what was compared (`state_size.describe`): sizes, parameters, state,
  learning rate and steps; for copy, of the run at the longest sequence."""
  out: dict[str, dict[str, Any]] = {}
  for sweep, task in (("long_range_copy", "copy"), ("long_range_agreement", "agreement")):
    for run in study.runs(sweep):
      if not run.finished:
        continue
      described = state_size.describe(workdir_lib.load_config(run.workdir),
                                      runner.run_summary(run)["num_params"])
      entry = out.setdefault(study.variant(run), {})
      if task not in entry or described["seq_len"] > entry[task]["seq_len"]:
        entry[task] = described
  return out


def run(study: runner.Study) -> dict[str, Any]:
  copy, agreement = _copy(study), _agreement(study)
  runs = [p["run"] for var in copy["variants"].values() for p in var.values()]
  runs += [v["run"] for v in agreement["variants"].values()]
  return {"copy": copy, "agreement": agreement, "models": _models(study),
          "runs": sorted(set(runs)), "failed_runs": copy["failed_runs"] + agreement["failed_runs"]}


def figures(results: dict[str, Any], out_dir: str) -> list[str]:
  paths = []
  copy = results["copy"]
  if copy["variants"]:
    fig, (acc_ax, loss_ax) = plots.figure(ncols=2)
    for name in variants.ordered(copy["variants"]):
      points = copy["variants"][name]
      ds = sorted(points, key=int)
      plots.errorbar(acc_ax, name, [int(d) for d in ds], [points[d]["accuracy"] for d in ds],
                     learnt=SOLVED)
      plots.errorbar(loss_ax, name, [int(d) for d in ds],
                     [points[d]["loss_over_baseline"] for d in ds])
    for ax in (acc_ax, loss_ax):
      ax.set_xscale("log")
      plots.integer_ticks(ax, copy["distances"])
    acc_ax.axhline(copy["chance"], color="0.4", ls="--", label="memoryless (chance $1/K$)")
    acc_ax.set(xlabel="dependency distance $T + L$", ylabel="accuracy",
               ylim=(0, 1.05), title="Copy task: recalled symbols")
    loss_ax.axhline(1.0, color="0.4", ls="--", label="memoryless baseline")
    loss_ax.set(xlabel="dependency distance $T + L$",
                ylabel="eval loss / memoryless baseline loss", title="Copy task: loss")
    acc_ax.legend(fontsize=7)
    loss_ax.legend(fontsize=7)
    paths.append(plots.save(fig, os.path.join(out_dir, "copy.png")))
  agreement = results["agreement"]
  if agreement["variants"]:
    fig, (dist_ax, attr_ax) = plots.figure(ncols=2)
    bins = agreement["bins"]
    for name in variants.ordered(agreement["variants"]):
      v = agreement["variants"][name]
      cells = [(hi, v["by_distance_bin"][stats.bin_label(lo, hi)]) for lo, hi in bins
               if stats.bin_label(lo, hi) in v["by_distance_bin"]]
      plots.errorbar(dist_ax, name, [x for x, _ in cells], [c for _, c in cells],
                     learnt=SOLVED)
      ks = sorted(v["by_attractors"], key=int)
      plots.errorbar(attr_ax, name, [int(k) for k in ks], [v["by_attractors"][k] for k in ks],
                     learnt=SOLVED)
    for ax in (dist_ax, attr_ax):
      ax.axhline(agreement["chance"], color="0.4", ls="--", label="chance")
      ax.set(ylabel="accuracy", ylim=(0.3, 1.05))
      ax.legend(fontsize=7)
    # One tick per reported cell, at its longest distance, labelled with the cell's range.
    dist_ax.set_xticks([hi for _, hi in bins], [stats.bin_label(lo, hi) for lo, hi in bins],
                       rotation=45 if len(bins) > 6 else 0)
    dist_ax.set_xlabel("subject-verb distance $k$" + (" (bins)" if agreement["bin_width"] > 1
                                                       else ""))
    attr_ax.set_xlabel("attractors")
    plots.integer_ticks(attr_ax)
    dist_ax.set_title("Agreement by distance")
    attr_ax.set_title("Agreement by attractor count")
    paths.append(plots.save(fig, os.path.join(out_dir, "agreement.png")))
  return paths


def _cell(summary: dict[str, Any] | None) -> str:
  """A table cell: mean ± 95% CI (or every seed where they split) and the seeds that learn."""
  if not summary:
    return "–"
  solved, seeds = stats.learnt_count(summary, SOLVED)
  return f"{stats.pm(summary, learnt=SOLVED)} [{solved}/{seeds}]"


def _models_table(described: dict[str, dict[str, Any]]) -> list[str]:
  """The models compared: sizes, parameters, state floats, learning rate, steps, per task."""

  def per_task(by_task: dict[str, Any], show) -> str:
    texts = [show(by_task[t]) if t in by_task else "–" for t in ("copy", "agreement")]
    return texts[0] if len(set(texts)) == 1 else " / ".join(texts)

  rows = []
  for name in variants.ordered(described):
    by_task = described[name]
    rows.append([variants.variant(name).label] + [per_task(by_task, show) for show in (
        lambda d: str(d["num_layers"]),
        lambda d: ", ".join(f"{k} {v}" for k, v in d["sizes"].items()),
        lambda d: str(d["parameters"]), lambda d: str(d["seq_len"]),
        lambda d: str(d["state_floats"]), lambda d: stats.fmt(d["learning_rate"], "g"),
        lambda d: str(d["steps"]))])
  return ["Models compared, per task (copy / agreement where they differ; copy: the run at the "
          "longest distance): layers, the settings that size the model, parameters of one "
          "seed, the task's sequence length n, the floats the model holds between tokens at n "
          "(a recurrence's state; attention's key-value cache, which grows with n), learning "
          "rate and training steps. Sizes differ by family: read the accuracies with the "
          "parameters and the state in view.", "",
          markdown.table(["model", "layers", "settings", "parameters", "n", "state (floats)",
                          "learning rate", "steps"], rows), ""]


def tables(results: dict[str, Any]) -> str:
  out = _models_table(results["models"]) if results.get("models") else []
  copy = results["copy"]
  if copy["variants"]:
    ds = [str(d) for d in copy["distances"]]
    rows = [[variants.variant(name).label] + [
        f"{_cell(p['accuracy'])} ({stats.fmt(p['loss_over_baseline']['mean'])})"
        if (p := copy["variants"][name].get(d)) else "–" for d in ds]
        for name in variants.ordered(copy["variants"])]
    out += [f"Copy task: accuracy by distance (mean ± 95% CI over seeds; where some seeds learn "
            f"and others do not, every seed), in square brackets the seeds that learn it "
            f"(accuracy >= {SOLVED}), and in round brackets the loss over the memoryless "
            f"baseline; chance accuracy {stats.fmt(copy['chance'], '.3f')}.",
            "", markdown.table(["model"] + [f"d = {d}" for d in ds], rows), ""]
  agreement = results["agreement"]
  if agreement["variants"]:
    names = variants.ordered(agreement["variants"])
    attractors = sorted({k for n in names for k in agreement["variants"][n]["by_attractors"]},
                        key=int)
    labels = [stats.bin_label(lo, hi) for lo, hi in agreement["bins"]]
    rows = [[variants.variant(name).label, _cell(agreement["variants"][name]["accuracy"])] +
            [_cell(agreement["variants"][name]["by_attractors"].get(a)) for a in attractors]
            for name in names]
    out += [f"Agreement: accuracy over all distances and by attractor count (mean ± 95% CI "
            f"over seeds, or every seed where they split; in square brackets the seeds that "
            f"learn it, accuracy >= {SOLVED}; chance {stats.fmt(agreement['chance'])}).", "",
            markdown.table(["model", "all"] + [f"{a} attractors" for a in attractors], rows),
            ""]
    rows = [[variants.variant(name).label] +
            [_cell(agreement["variants"][name]["by_distance_bin"].get(b)) for b in labels]
            for name in names]
    what = (f"bins of {agreement['bin_width']} distances, each cell over its expected number "
            f"of evaluation examples" if agreement["bin_width"] > 1 else "per distance")
    out += [f"Agreement by subject-verb distance ({what}; same notation).", "",
            markdown.table(["model"] + [f"d = {b}" for b in labels], rows)]
  return "\n".join(out) if out else "No run finished."
