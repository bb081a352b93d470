"""Question 7: is recall accuracy explained by how much a model holds (its state size)?

Runs (configs/study.py): the `capacity` sweep — multi-query associative recall (MQAR, Arora et
al. 2023, "Zoology"; configs/mqar.py) with K key-value pairs, one run per capacity model (the
scale's models, or the subset `capacity.models` names), model size (two or more per family,
`capacity.sizes`) and K (`capacity.pairs`), every K at the same sequence length so only the
information to hold varies; and the `capacity_copy` sweep — copying long strings (Jelassi et
al. 2024; configs/long_copy.py), one run per capacity model and size,
strings of every length L in `capacity.long_copy.lengths`, so accuracy against L per state size.
Analysis: each run's final accuracy per seed (summary.json `eval_by_seed`), mean and 95%
interval over seeds combined with the binomial one; the state each size gives, in floats
(`seqresearch.study.state_size.state_floats`: the carry of a recurrence, the key-value cache
2·L·D·T of attention); long copy by bins of L (`capacity.long_copy.bin_width`), the seeds
that learn each (accuracy >= SOLVED).
Figures: accuracy against K per model, one line per size; accuracy against state size per K
(Zoology's Figure 2 layout); long-copy accuracy against L per model, one line per size.
Verdict, long copy: per model, does accuracy fall with L at its largest state (length, which
here is the distance, explains it: more state does not help), is the largest state more
accurate than the smallest at the longest L (state size explains it), both or neither — each
by two 95% intervals that do not overlap. The verdict's tests: experiments/capacity_verdict.py.
"""

from __future__ import annotations

import os
from typing import Any

from seqresearch import build
from seqresearch import models
from seqresearch import workdir as workdir_lib
from seqresearch.study import markdown, plots, runner, stats, variants
from seqresearch.study.state_size import state_floats

from experiments import capacity_verdict

TITLE = "Capacity: recall accuracy versus the number of pairs and the state size"
CLAIM = ("The essay's O(1) path length explains why attention reaches far, not how much it can "
         "hold. A recurrence keeps a fixed-size state, attention a key-value cache that grows "
         "with the sequence; Arora et al. (2023, Zoology) found multi-query associative recall "
         "accuracy to follow the state size. Checked here on MQAR: at an equal number of pairs "
         "K, does a larger state give a recurrent model higher accuracy, and does attention "
         "stay accurate as K grows? And on copying long strings (Jelassi et al. 2024): is "
         "accuracy against the string length L explained by the distance, by the state size, "
         "or by both?")
SWEEPS = ("capacity", "capacity_copy")
SOLVED = capacity_verdict.SOLVED  # accuracy from which a cell counts as learnt
verdict = capacity_verdict.verdict  # the experiment's verdict
SIZE_MARKERS = ("o", "s", "^", "D", "v", "P")


def _per_seed(summary: dict[str, Any]) -> list[dict[str, Any]]:
  return [summary["eval_by_seed"][k] for k in sorted(summary["eval_by_seed"], key=int)]


def _state(config) -> tuple[Any, int, int | None]:
  """(task settings, floats the run's model holds between tokens at the task's length, the
  attention window it was trained with: None for a model that attends to the whole prefix or
  does not attend)."""
  task = build.task_settings(config.task)
  fields = {k: v for k, v in config.model.items() if k != "name"}
  settings = models.model_settings(config.model.name, **fields)
  return (task, state_floats(settings, task.seq_len),
          getattr(settings, "attention_window", None))


def _size_fields(member) -> dict[str, Any]:
  """The fields this size sets (the sweep's model.* overrides)."""
  return {k.split(".", 1)[1]: v for k, v in member.overrides if k.startswith("model.")}


def run(study: runner.Study) -> dict[str, Any]:
  results = _mqar(study)
  results["long_copy"] = _long_copy(study)
  results["runs"] = sorted(results["runs"] + results["long_copy"]["runs"])
  results["failed_runs"] += results["long_copy"]["failed_runs"]
  return results


def _long_copy(study: runner.Study) -> dict[str, Any]:
  """Long-string copy accuracy by bins of L, per variant and size (smallest state first)."""
  runs = study.runs("capacity_copy")
  settings = study.settings.capacity.long_copy
  bins = stats.distance_bins(*settings.lengths, settings.bin_width)
  found: dict[str, dict[int, dict[str, Any]]] = {}
  chance = None
  for member in runs:
    if not member.finished:
      continue
    config = workdir_lib.load_config(member.workdir)
    task, floats, window = _state(config)
    chance = task.chance_accuracy
    evals = _per_seed(runner.run_summary(member))
    examples = int(config.eval_batch_size * config.num_eval_batches)
    low, high = task.trained_distances
    per_length = examples / (high - low + 1)  # strings per length: L is drawn uniformly
    binned = stats.binned([m["accuracy_by_distance"] for m in evals], bins)
    by_length = {}
    for lo, hi in bins:
      label = stats.bin_label(lo, hi)
      if label in binned:
        by_length[label] = stats.seed_summary(binned[label],
                                              examples=int(per_length * (hi - lo + 1)))
    found.setdefault(study.variant(member), {})[floats] = {
        "state_floats": floats,
        "fields": _size_fields(member),
        "attention_window": window,
        "accuracy": stats.seed_summary([m["accuracy"] for m in evals], examples=examples),
        "by_length": by_length,
        "seeds_solved_by_length": {k: stats.learnt_count(v, SOLVED)[0]
                                   for k, v in by_length.items()},
        "num_seeds": len(evals),
        "run": study.relpath(member.workdir),
    }
  return {
      "lengths": list(settings.lengths),
      "bins": [list(b) for b in bins],
      "labels": [stats.bin_label(*b) for b in bins],
      "chance": chance,  # 1/A per symbol
      "variants": {name: {"sizes": [sizes[f] for f in sorted(sizes)]}
                   for name, sizes in found.items()},
      "runs": sorted(s["run"] for sizes in found.values() for s in sizes.values()),
      "failed_runs": runner.failed_runs(study, runs),
  }


def _mqar(study: runner.Study) -> dict[str, Any]:
  runs = study.runs("capacity")
  found: dict[str, dict[int, dict[str, Any]]] = {}
  length = None
  for member in runs:
    if not member.finished:
      continue
    config = workdir_lib.load_config(member.workdir)
    task, floats, _ = _state(config)
    length = task.seq_len
    evals = _per_seed(runner.run_summary(member))
    size = found.setdefault(study.variant(member), {}).setdefault(floats, {
        "state_floats": floats,
        "fields": _size_fields(member),
        "by_pairs": {}})
    size["by_pairs"][str(task.num_pairs)] = {
        "accuracy": stats.seed_summary(
            [m["accuracy"] for m in evals],
            examples=int(config.eval_batch_size * config.num_eval_batches)),
        "seeds_solved": sum(m["accuracy"] >= SOLVED for m in evals),
        "num_seeds": len(evals),
        "run": study.relpath(member.workdir),
    }
  pairs = sorted({int(k) for sizes in found.values() for s in sizes.values()
                  for k in s["by_pairs"]})
  return {
      "length": length,
      "pairs": pairs,
      "chance": {str(k): 1.0 / k for k in pairs},  # 1/K: a guess among the context's values
      # Per variant, its sizes ordered by state (smallest first).
      "variants": {name: {"sizes": [sizes[f] for f in sorted(sizes)]}
                   for name, sizes in found.items()},
      "runs": sorted(p["run"] for sizes in found.values() for s in sizes.values()
                     for p in s["by_pairs"].values()),
      "failed_runs": runner.failed_runs(study, runs),
  }


def figures(results: dict[str, Any], out_dir: str) -> list[str]:
  paths = _mqar_figures(results, out_dir) if results["variants"] else []
  if results["long_copy"]["variants"]:
    paths.append(_long_copy_figure(results["long_copy"], out_dir))
  return paths


def _panels(count: int):
  """(fig, axes) for one small panel per model, at most five a row."""
  ncols = min(5, count)
  return plots.figure(ncols=ncols, nrows=-(-count // ncols), width=3.2, height=2.8)


def _long_copy_figure(long_copy: dict[str, Any], out_dir: str) -> str:
  found = long_copy["variants"]
  names = variants.ordered(found)
  fig, axes = _panels(len(names))
  ticks = [hi for _, hi in long_copy["bins"]]
  for ax, name in zip(axes, names):
    for i, size in enumerate(found[name]["sizes"]):
      cells = [(hi, size["by_length"][label]) for (_, hi), label
               in zip(long_copy["bins"], long_copy["labels"]) if label in size["by_length"]]
      plots.errorbar(ax, name, [x for x, _ in cells], [c for _, c in cells], learnt=SOLVED,
                     marker=SIZE_MARKERS[i % len(SIZE_MARKERS)], ls="-",
                     alpha=0.4 + 0.6 * (i + 1) / len(found[name]["sizes"]),
                     label=f"state {size['state_floats']}")
    ax.axhline(long_copy["chance"], color="0.4", ls="--", label="chance $1/A$")
    ax.set_xticks(ticks, long_copy["labels"], rotation=45 if len(ticks) > 4 else 0,
                  fontsize=7)
    ax.set(xlabel="string length $L$ (bins)", ylabel="per-symbol accuracy", ylim=(0, 1.05),
           title=variants.variant(name).label)
    ax.legend(fontsize=6)
  for ax in axes[len(names):]:
    ax.set_visible(False)
  return plots.save(fig, os.path.join(out_dir, "capacity_long_copy.png"))


def _mqar_figures(results: dict[str, Any], out_dir: str) -> list[str]:
  found, pairs = results["variants"], results["pairs"]
  names = variants.ordered(found)
  paths = []
  fig, axes = _panels(len(names))
  for ax, name in zip(axes, names):
    for i, size in enumerate(found[name]["sizes"]):
      ks = [k for k in pairs if str(k) in size["by_pairs"]]
      plots.errorbar(ax, name, ks, [size["by_pairs"][str(k)]["accuracy"] for k in ks],
                     learnt=SOLVED, marker=SIZE_MARKERS[i % len(SIZE_MARKERS)], ls="-",
                     alpha=0.4 + 0.6 * (i + 1) / len(found[name]["sizes"]),
                     label=f"state {size['state_floats']}")
    ax.plot(pairs, [results["chance"][str(k)] for k in pairs], color="0.4", ls="--",
            label="chance $1/K$")
    ax.set_xscale("log", base=2)
    plots.integer_ticks(ax, pairs)
    ax.set(xlabel="key-value pairs $K$", ylabel="accuracy", ylim=(0, 1.05),
           title=variants.variant(name).label)
    ax.legend(fontsize=6)
  for ax in axes[len(names):]:
    ax.set_visible(False)
  paths.append(plots.save(fig, os.path.join(out_dir, "capacity_pairs.png")))

  fig, axes = plots.figure(ncols=len(pairs), width=4.2)
  for ax, k in zip(axes, pairs):
    for name in names:
      sizes = [s for s in found[name]["sizes"] if str(k) in s["by_pairs"]]
      plots.errorbar(ax, name, [s["state_floats"] for s in sizes],
                     [s["by_pairs"][str(k)]["accuracy"] for s in sizes], learnt=SOLVED)
    ax.axhline(results["chance"][str(k)], color="0.4", ls="--", label="chance $1/K$")
    ax.set_xscale("log")
    ax.set(xlabel="state size (floats held between tokens)", ylabel="accuracy",
           ylim=(0, 1.05), title=f"MQAR, $K = {k}$, $T = {results['length']}$")
    ax.legend(fontsize=6)
  paths.append(plots.save(fig, os.path.join(out_dir, "capacity_state.png")))
  return paths


def tables(results: dict[str, Any]) -> str:
  out = [_mqar_table(results)] if results["variants"] else ["No MQAR run finished."]
  long_copy = results["long_copy"]
  if long_copy["variants"]:
    rows = []
    for name in variants.ordered(long_copy["variants"]):
      for size in long_copy["variants"][name]["sizes"]:
        rows.append([variants.variant(name).label, str(size["state_floats"]),
                     ", ".join(f"{k}={v}" for k, v in size["fields"].items())] +
                    [f"{stats.pm(c, learnt=SOLVED)} ({size['seeds_solved_by_length'][b]} of "
                     f"{size['num_seeds']})" if (c := size["by_length"].get(b)) else "–"
                     for b in long_copy["labels"]])
    out += [f"Long-string copy: per-symbol accuracy by string length L (bins; L uniform in "
            f"{long_copy['lengths'][0]} .. {long_copy['lengths'][1]}; mean ± 95% CI over "
            f"seeds, or every seed where some reach {SOLVED} and others do not; in brackets "
            f"the seeds at or above {SOLVED}); chance {stats.fmt(long_copy['chance'], '.3f')}. "
            "The state is counted at the sequence length 2·max L.",
            markdown.table(["model", "state (floats)", "size"] +
                           [f"L = {b}" for b in long_copy["labels"]], rows)]
  else:
    out.append("No long-string copy run finished.")
  return "\n\n".join(out)


def _mqar_table(results: dict[str, Any]) -> str:
  found, pairs = results["variants"], results["pairs"]
  rows = []
  for name in variants.ordered(found):
    for size in found[name]["sizes"]:
      rows.append([variants.variant(name).label, str(size["state_floats"]),
                   ", ".join(f"{k}={v}" for k, v in size["fields"].items())] +
                  [f"{stats.pm(p['accuracy'], learnt=SOLVED)} ({p['seeds_solved']} of "
                   f"{p['num_seeds']})" if (p := size["by_pairs"].get(str(k))) else "–"
                   for k in pairs])
  return (f"MQAR accuracy at sequence length {results['length']} (mean ± 95% CI over seeds, or "
          f"every seed where some reach {SOLVED} and others do not; in brackets the seeds at "
          f"or above {SOLVED}) by number of pairs K, chance 1/K; the state is what the model "
          "holds between tokens, in floats (a recurrence's carry, attention's key-value "
          "cache).\n\n" +
          markdown.table(["model", "state (floats)", "size"] + [f"K = {k}" for k in pairs],
                         rows))
