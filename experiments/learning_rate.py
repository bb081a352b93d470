"""Control: every model's learning rate from one sweep at one budget (DESIGN.md §7).

Runs (configs/study.py, at a scale whose `learning_rate.rates` holds two or more values): the
`learning_rate` sweep, every table model and the long-range variants at every rate, on one
pilot task (`learning_rate.task` with `learning_rate.fields`) with that task's training budget
at the scale. `seqresearch.study.tuning` picks each variant's rate (lowest mean final
evaluation loss over seeds; a diverged seed counts as an infinite loss) and every other sweep
of the scale trains the variant at it. At a scale that does not tune, each model trains at its
table rate, and this section says so.
Analysis: per variant and rate, the final accuracy (mean and 95% interval over seeds, binomial
combined), the seeds that learn the pilot (accuracy >= SOLVED), the mean loss, the choice.
Figure: accuracy and loss against the rate, one line per variant, the chosen rate circled.
"""

from __future__ import annotations

import os
from typing import Any

from seqresearch import models
from seqresearch import workdir as workdir_lib
from seqresearch.study import markdown, plots, runner, stats, tuning, variants, verdicts

TITLE = "Learning rates: one sweep at one budget for every model"
CLAIM = ("Not a claim of the essay but the control every comparison below rests on: a model "
         "that loses at a learning rate chosen for another would say nothing about its "
         "architecture. Every model gets its rate from the same small sweep at the same budget.")
SWEEPS = (tuning.SWEEP,)
SOLVED = 0.9  # pilot accuracy from which a seed counts as having learnt the task


def _rate(run) -> float:
  return float(dict(run.overrides)["optimizer.learning_rate"])


def run(study: runner.Study) -> dict[str, Any]:
  if not study.tunes:  # every model trained at this scale, the anchors' own ones included
    anchors = study.config.anchor_models(study.scale).values()
    table = variants.ordered({*study.config.study_models(study.scale),
                              *(n for names in anchors for n in names)})
    return {"tuned": False, "rates": {n: models.entry(n).learning_rate for n in table},
            "runs": [], "failed_runs": []}
  runs = study.runs(tuning.SWEEP)
  rates = sorted({_rate(r) for r in runs})
  found: dict[str, dict[str, Any]] = {}
  pilot = None
  for member in runs:
    if not member.finished:
      continue
    config = workdir_lib.load_config(member.workdir)
    pilot = pilot or {"task": config.task.name,
                      "fields": dict(study.settings.learning_rate.task_fields),
                      "num_seeds": config.num_seeds, "batch_size": config.batch_size}
    evals = runner.run_summary(member)["eval_by_seed"]
    per_seed = [evals[k] for k in sorted(evals, key=int)]
    accuracy = stats.seed_summary(
        [m["accuracy"] for m in per_seed],
        examples=int(config.eval_batch_size * config.num_eval_batches))
    # Keyed by the rate's index in `rates_tried` (a key holds no '.': results paths split there).
    found.setdefault(study.variant(member), {"by_rate": {}})["by_rate"][
        str(rates.index(_rate(member)))] = {
        "rate": _rate(member),
        "accuracy": accuracy,
        "loss": stats.seed_summary([m["loss"] for m in per_seed]),
        "seeds_solved": stats.learnt_count(accuracy, SOLVED)[0],
        "num_seeds": len(per_seed),
        "num_train_steps": config.num_train_steps,
        "run": study.relpath(member.workdir),
    }
  chosen = workdir_lib.read_json(study.learning_rates_file)
  for name, entry in found.items():
    entry["chosen"] = chosen["rates"].get(name)
    entry["chosen_index"] = (str(rates.index(entry["chosen"])) if entry["chosen"] in rates
                             else None)
  return {"tuned": True, "rates_tried": rates, "criterion": chosen["criterion"],
          "pilot": pilot, "variants": found,
          "rates": {name: entry["chosen"] for name, entry in found.items()},
          "runs": sorted(p["run"] for e in found.values() for p in e["by_rate"].values()),
          "failed_runs": runner.failed_runs(study, runs)}


def figures(results: dict[str, Any], out_dir: str) -> list[str]:
  if not results["tuned"] or not results["variants"]:
    return []
  fig, (acc_ax, loss_ax) = plots.figure(ncols=2)
  for name in variants.ordered(results["variants"]):
    entry = results["variants"][name]
    points = [entry["by_rate"][k] for k in sorted(entry["by_rate"], key=int)]
    xs = [p["rate"] for p in points]
    plots.errorbar(acc_ax, name, xs, [p["accuracy"] for p in points], learnt=SOLVED)
    plots.errorbar(loss_ax, name, xs, [p["loss"] for p in points], points=True)
    if entry["chosen"] in xs:
      i = xs.index(entry["chosen"])
      for ax, key in ((acc_ax, "accuracy"), (loss_ax, "loss")):
        if points[i][key]["mean"] is not None:
          ax.plot([xs[i]], [points[i][key]["mean"]], marker="o", ms=11, mfc="none",
                  color=variants.style(name)["color"])
  for ax in (acc_ax, loss_ax):
    ax.set_xscale("log")
    ax.set_xticks(results["rates_tried"], [f"{r:g}" for r in results["rates_tried"]])
    ax.minorticks_off()
    ax.set_xlabel("peak learning rate")
  acc_ax.set(ylabel="final accuracy on the pilot", ylim=(0, 1.05),
             title="Pilot accuracy (chosen rate circled)")
  loss_ax.set(ylabel="final evaluation loss", title="Pilot loss (the criterion)")
  acc_ax.legend(fontsize=6)
  return [plots.save(fig, os.path.join(out_dir, "learning_rate.png"))]


def tables(results: dict[str, Any]) -> str:
  if not results["tuned"]:
    rows = [[variants.variant(n).label, f"{r:g}"] for n, r in results["rates"].items()]
    return ("This scale trains every model at its table learning rate (no sweep).\n\n" +
            markdown.table(["model", "learning rate"], rows))
  if not results["variants"]:
    return "No pilot run finished."
  rates = results["rates_tried"]
  rows = []
  for name in variants.ordered(results["variants"]):
    entry = results["variants"][name]
    cells = []
    for i in range(len(rates)):
      p = entry["by_rate"].get(str(i))
      cell = "–" if p is None else (f"{stats.pm(p['accuracy'], learnt=SOLVED)} "
                                    f"[{p['seeds_solved']}/{p['num_seeds']}] "
                                    f"(loss {stats.fmt(p['loss']['mean'], '.3f')})")
      cells.append(f"**{cell}**" if str(i) == entry["chosen_index"] else cell)
    rows.append([variants.variant(name).label] + cells +
                [f"{entry['chosen']:g}" if entry["chosen"] else "–"])
  pilot = results["pilot"]
  task = ", ".join(f"{k}={v}" for k, v in pilot["fields"].items())
  return (f"Pilot: task {pilot['task']} ({task}), {pilot['num_seeds']} seeds per run, "
          f"batch {pilot['batch_size']}, each model at its family's training budget of this "
          f"scale. Final accuracy (mean ± 95% CI over seeds, or every seed where they split), "
          f"in square brackets the seeds that learn it (accuracy >= {SOLVED}), and the mean "
          f"final loss; the chosen rate in bold. Criterion: {results['criterion']}.\n\n" +
          markdown.table(["model"] + [f"lr = {r:g}" for r in rates] + ["chosen"], rows))


def verdict(results: dict[str, Any]) -> verdicts.Verdict:
  v = verdicts.Verdict(results)
  label = lambda n: variants.variant(n).label  # noqa: E731
  if not results["tuned"]:
    v.say("At this scale every model trains at its table learning rate (" + ", ".join(
        f"{label(n)} {v.number(f'rates.{n}', 'g')}" for n in variants.ordered(results["rates"]))
        + "): no sweep chose them, so a loss here may be the rate's, not the architecture's; "
        "the standard scale tunes every model.")
    return v
  found = results["variants"]
  if not found:
    v.say("No pilot run finished: no learning rate was chosen.")
    return v
  names = variants.ordered(found)
  v.say("Each model trains at the rate its pilot chose (" + ", ".join(
      f"{label(n)} {v.number(f'variants.{n}.chosen', 'g')}" for n in names) +
      f"; {results['criterion']}).")
  last = str(len(results["rates_tried"]) - 1)
  edge = [n for n in names if found[n]["chosen_index"] in ("0", last)]
  if edge:
    v.say("At the edge of the grid for " + ", ".join(label(n) for n in edge) + ": its best "
          "rate may lie outside it; a wider sweep would decide.")
  unlearnt = [n for n in names if found[n]["chosen_index"] is not None and
              found[n]["by_rate"][found[n]["chosen_index"]]["seeds_solved"] == 0]
  if unlearnt:
    chosen = lambda n: f"variants.{n}.by_rate.{found[n]['chosen_index']}"  # noqa: E731
    v.say("No seed learns the pilot at the chosen rate for " + ", ".join(
        f"the {label(n)} (accuracy {v.number(chosen(n) + '.accuracy.mean')})"
        for n in unlearnt) + ": its rate is chosen by the loss alone.")
  if results["failed_runs"]:
    v.say(f"{len(results['failed_runs'])} pilot run(s) failed and are left out.")
  return v
