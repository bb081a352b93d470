"""Question 7: is recall accuracy explained by how much a model holds (its state size)?

Runs (configs/study.py): the `capacity` sweep — multi-query associative recall (MQAR, Arora et
al. 2023, "Zoology"; configs/mqar.py) with K key-value pairs, one run per table model, model
size (two or more per family, `capacity.sizes`) and K (`capacity.pairs`), every K at the same
sequence length so only the information to hold varies.
Analysis: each run's final accuracy per seed (summary.json `eval_by_seed`), mean and 95%
interval over seeds combined with the binomial one; the state each size gives, in floats
(`seqresearch.study.state_size.state_floats`: the carry of a recurrence, the key-value cache
2·L·D·T of attention).
Figures: accuracy against K per model, one line per size; accuracy against state size per K
(Zoology's Figure 2 layout).
"""

from __future__ import annotations

import os
from typing import Any

from seqresearch import build
from seqresearch import models
from seqresearch import workdir as workdir_lib
from seqresearch.study import markdown, plots, runner, stats, variants, verdicts
from seqresearch.study.state_size import state_floats

TITLE = "Capacity: recall accuracy versus the number of pairs and the state size"
CLAIM = ("The essay's O(1) path length explains why attention reaches far, not how much it can "
         "hold. A recurrence keeps a fixed-size state, attention a key-value cache that grows "
         "with the sequence; Arora et al. (2023, Zoology) found multi-query associative recall "
         "accuracy to follow the state size. Checked here on MQAR: at an equal number of pairs "
         "K, does a larger state give a recurrent model higher accuracy, and does attention "
         "stay accurate as K grows?")
SWEEPS = ("capacity",)
SOLVED = 0.9  # accuracy from which K pairs count as recalled, not merely above chance
SIZE_MARKERS = ("o", "s", "^", "D", "v", "P")


def _per_seed(summary: dict[str, Any]) -> list[dict[str, Any]]:
  return [summary["eval_by_seed"][k] for k in sorted(summary["eval_by_seed"], key=int)]


def run(study: runner.Study) -> dict[str, Any]:
  runs = study.runs("capacity")
  found: dict[str, dict[int, dict[str, Any]]] = {}
  length = None
  for member in runs:
    if not member.finished:
      continue
    config = workdir_lib.load_config(member.workdir)
    task = build.task_settings(config.task)
    fields = {k: v for k, v in config.model.items() if k != "name"}
    settings = models.model_settings(config.model.name, **fields)
    floats = state_floats(settings, task.seq_len)
    length = task.seq_len
    evals = _per_seed(runner.run_summary(member))
    size = found.setdefault(study.variant(member), {}).setdefault(floats, {
        "state_floats": floats,
        # The fields this size sets (the sweep's model.* overrides).
        "fields": {k.split(".", 1)[1]: v for k, v in member.overrides
                   if k.startswith("model.")},
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
  found, pairs = results["variants"], results["pairs"]
  if not found:
    return []
  names = variants.ordered(found)
  paths = []
  ncols = min(5, len(names))
  nrows = -(-len(names) // ncols)
  fig, axes = plots.figure(ncols=ncols, nrows=nrows, width=3.2, height=2.8)
  for ax, name in zip(axes, names):
    for i, size in enumerate(found[name]["sizes"]):
      ks = [k for k in pairs if str(k) in size["by_pairs"]]
      plots.errorbar(ax, name, ks, [size["by_pairs"][str(k)]["accuracy"] for k in ks],
                     marker=SIZE_MARKERS[i % len(SIZE_MARKERS)], ls="-",
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
                     [s["by_pairs"][str(k)]["accuracy"] for s in sizes])
    ax.axhline(results["chance"][str(k)], color="0.4", ls="--", label="chance $1/K$")
    ax.set_xscale("log")
    ax.set(xlabel="state size (floats held between tokens)", ylabel="accuracy",
           ylim=(0, 1.05), title=f"MQAR, $K = {k}$, $T = {results['length']}$")
    ax.legend(fontsize=6)
  paths.append(plots.save(fig, os.path.join(out_dir, "capacity_state.png")))
  return paths


def tables(results: dict[str, Any]) -> str:
  found, pairs = results["variants"], results["pairs"]
  if not found:
    return "No run finished."
  rows = []
  for name in variants.ordered(found):
    for size in found[name]["sizes"]:
      rows.append([variants.variant(name).label, str(size["state_floats"]),
                   ", ".join(f"{k}={v}" for k, v in size["fields"].items())] +
                  [f"{stats.pm(p['accuracy'])} ({p['seeds_solved']} of {p['num_seeds']})"
                   if (p := size["by_pairs"].get(str(k))) else "–" for k in pairs])
  return (f"MQAR accuracy at sequence length {results['length']} (mean ± 95% CI over seeds; in "
          f"brackets the seeds at or above {SOLVED}) by number of pairs K, chance 1/K; the "
          "state is what the model holds between tokens, in floats (a recurrence's carry, "
          "attention's key-value cache).\n\n" +
          markdown.table(["model", "state (floats)", "size"] + [f"K = {k}" for k in pairs],
                         rows))


def _path(name: str, i: int, k: int) -> str:
  return f"variants.{name}.sizes.{i}.by_pairs.{k}.accuracy"


def verdict(results: dict[str, Any]) -> verdicts.Verdict:
  v = verdicts.Verdict(results)
  found, pairs = results["variants"], results["pairs"]
  if not found:
    v.say("No capacity run finished.")
    return v
  names = variants.ordered(found)
  label = lambda n: variants.variant(n).label  # noqa: E731
  far = pairs[-1]
  state = lambda n, i: v.number(f"variants.{n}.sizes.{i}.state_floats", "d")  # noqa: E731
  v.say(f"On MQAR at sequence length {v.number('length', 'd')} with K = " +
        ", ".join(v.number(f"pairs.{i}", "d") for i in range(len(pairs))) +
        f" pairs, at K = {far} (chance {v.number(f'chance.{far}')}) accuracy is " +
        "; ".join(f"{label(n)} " + ", ".join(
            f"{v.pm(_path(n, i, far))} (state {state(n, i)})"
            for i, s in enumerate(found[n]["sizes"]) if str(far) in s["by_pairs"])
            for n in names) + " (mean ± 95% CI over seeds; state in floats).")
  _state_verdict(v, results, names)
  _attention_verdict(v, results, names)
  _across_verdict(v, results, names)
  _matched_verdict(v, results, names)
  if results["failed_runs"]:
    v.say(f"{len(results['failed_runs'])} run(s) failed and are left out.")
  return v


def _acc(results: dict[str, Any], name: str, i: int, k: int) -> dict[str, Any] | None:
  point = results["variants"][name]["sizes"][i]["by_pairs"].get(str(k))
  return point["accuracy"] if point else None


def _above(summary: dict[str, Any], chance: float) -> bool:
  """Whether the 95% interval of `summary` lies above `chance` (False without an interval)."""
  return (summary["mean"] is not None and summary["ci95"] is not None
          and summary["mean"] - summary["ci95"] > chance)


def _state_verdict(v: verdicts.Verdict, results: dict[str, Any], names: list[str]) -> None:
  """Recurrent models: at equal K, is the largest state more accurate than the smallest?"""
  label = lambda n: variants.variant(n).label  # noqa: E731
  outcome: dict[str, list[tuple[str, int]]] = {
      "higher": [], "lower": [], "suffices": [], "unlearnt": [], "indistinguishable": [],
      "undecided": []}
  for n in names:
    sizes = results["variants"][n]["sizes"]
    if not variants.variant(n).is_recurrent or len(sizes) < 2:
      continue
    last = len(sizes) - 1
    for k in results["pairs"]:
      small, large = _acc(results, n, 0, k), _acc(results, n, last, k)
      if small is None or large is None:
        continue
      how = stats.compare(large, small)
      chance = results["chance"][str(k)]
      # A model at or below chance at both sizes learnt nothing: a gain from below chance
      # (e.g. emitting blanks) up to chance is not more recall.
      if not (_above(small, chance) or _above(large, chance)):
        how = "unlearnt"
      elif how == "indistinguishable" and small["mean"] >= SOLVED:
        how = "suffices"
      outcome[how].append((n, k))
  compared = sum(len(cells) for cells in outcome.values())
  if not compared:
    v.say("No recurrent model was run at two sizes: the state-size test cannot be made.")
    return

  def cells(key: str) -> str:
    return ", ".join(
        f"{label(n)} at K = {k} ({v.number(_path(n, 0, k) + '.mean')} → "
        f"{v.number(_path(n, len(results['variants'][n]['sizes']) - 1, k) + '.mean')})"
        for n, k in outcome[key])

  test = ("test: the 95% intervals of the largest and the smallest state of one model at "
          "equal K do not overlap")
  if outcome["higher"]:
    v.say(f"A larger state gives a recurrent model higher accuracy at equal K in "
          f"{len(outcome['higher'])} of {compared} comparisons ({test}): " + cells("higher") +
          ".")
  if outcome["lower"]:
    v.say(f"A larger state gives lower accuracy in {len(outcome['lower'])} of {compared} "
          f"comparisons (against the capacity account, or an optimisation failure of the larger "
          f"model): " + cells("lower") + ".")
  if outcome["suffices"]:
    v.say(f"The smallest state already recalls K pairs (accuracy >= {SOLVED}, intervals "
          f"overlapping) for " + cells("suffices") + ".")
  if outcome["unlearnt"]:
    v.say("No 95% interval above chance 1/K at either size (not learnt within the budget, "
          "which says nothing about capacity; Trockman et al. 2024): " + cells("unlearnt") +
          ".")
  if outcome["indistinguishable"] or outcome["undecided"]:
    v.say("No difference the intervals can show (or fewer than two finite seeds) for " +
          ", ".join(f"{label(n)} at K = {k}" for key in ("indistinguishable", "undecided")
                    for n, k in outcome[key]) + ".")
  if outcome["higher"] and not outcome["lower"]:
    v.say("Within the recurrent models, accuracy rises with state size at equal K, as the "
          "capacity account (Arora et al. 2023) predicts.")
  elif not outcome["higher"] and not outcome["lower"]:
    v.say("Whether state size explains recurrent accuracy is undecided at this scale: no "
          "model's sizes are told apart; longer training and more seeds (the full scale) "
          "would decide.")


def _attention_verdict(v: verdicts.Verdict, results: dict[str, Any], names: list[str]) -> None:
  """Attention (its largest size): does accuracy stay high as K grows?"""
  label = lambda n: variants.variant(n).label  # noqa: E731
  near, far = results["pairs"][0], results["pairs"][-1]
  for n in [n for n in names if variants.variant(n).is_attention]:
    i = len(results["variants"][n]["sizes"]) - 1
    low, high = _acc(results, n, i, near), _acc(results, n, i, far)
    if low is None or high is None or high["mean"] is None:
      continue
    numbers = (f"{v.number(_path(n, i, near) + '.mean')} at K = {near}, "
               f"{v.number(_path(n, i, far) + '.mean')} at K = {far}")
    if high["mean"] >= SOLVED:
      v.say(f"The {label(n)} stays at or above {SOLVED} as K grows ({numbers}).")
    elif low["mean"] is not None and low["mean"] >= SOLVED and \
        stats.compare(high, low) == "lower":
      v.say(f"The {label(n)}'s accuracy falls as K grows ({numbers}; 95% intervals apart), "
            f"although its key-value cache holds every pair.")
    else:
      v.say(f"The {label(n)} is below {SOLVED} at K = {far} ({numbers}): not learnt within "
            f"the budget, so whether attention stays high is undecided at this scale.")


def _best(results: dict[str, Any], names: list[str], k: int, side) -> tuple[str, int] | None:
  """(variant, size index) of one side with the highest mean accuracy at K = k."""
  points = [(n, i) for n in names if side(variants.variant(n))
            for i in range(len(results["variants"][n]["sizes"]))
            if (a := _acc(results, n, i, k)) is not None and a["mean"] is not None]
  return max(points, key=lambda p: _acc(results, *p, k)["mean"]) if points else None


def _across_verdict(v: verdicts.Verdict, results: dict[str, Any], names: list[str]) -> None:
  """At the largest K: the best attention point against the best recurrent one, with states."""
  far = results["pairs"][-1]
  att = _best(results, names, far, lambda x: x.is_attention)
  rec = _best(results, names, far, lambda x: x.is_recurrent)
  if att is None or rec is None:
    return
  sizes = lambda p: results["variants"][p[0]]["sizes"][p[1]]  # noqa: E731
  desc = lambda p: (f"{variants.variant(p[0]).label} with state "  # noqa: E731
                    f"{v.number(f'variants.{p[0]}.sizes.{p[1]}.state_floats', 'd')}, "
                    f"{v.number(_path(*p, far) + '.mean')}")
  how = stats.compare(_acc(results, *att, far), _acc(results, *rec, far))
  more = sizes(att)["state_floats"] > sizes(rec)["state_floats"]
  if how == "higher":
    v.say(f"At K = {far} the best attention model ({desc(att)}) beats the best recurrent one "
          f"({desc(rec)}; 95% intervals apart)" +
          (": it also holds more floats, so this comparison does not separate the architecture "
           "from the state size." if more else
           " with no more state: here the architecture, not the state size, decides."))
  elif how == "undecided":
    v.say(f"At K = {far} the best attention model ({desc(att)}) and the best recurrent one "
          f"({desc(rec)}) cannot be compared (fewer than two finite seeds or no interval): "
          f"undecided at this scale; more seeds would decide.")
  elif how == "lower" or _acc(results, *rec, far)["mean"] >= SOLVED:
    position = "beats" if how == "lower" else "is level with"
    v.contradicts(f"At K = {far} the best recurrent model ({desc(rec)}) {position} the best "
                  f"attention model ({desc(att)}; 95% intervals), against the essay's claim "
                  f"that attention is needed to recall the pairs.")
  else:
    v.say(f"At K = {far} neither side recalls the pairs (best attention model {desc(att)}, best "
          f"recurrent one {desc(rec)}, both below {SOLVED} and not apart): undecided at this "
          f"scale; longer training would decide.")


def _matched_verdict(v: verdicts.Verdict, results: dict[str, Any], names: list[str]) -> None:
  """At the largest K and matched state: attention against recurrent models holding as much.

  DESIGN.md §7: a difference is called a property of the architecture only once compared at
  matched cost; here the cost is the state. The attention point with the smallest cache is
  set against the best recurrent point whose state is at least as large.
  """
  far = results["pairs"][-1]
  sizes = lambda n: results["variants"][n]["sizes"]  # noqa: E731
  attention = [(n, i) for n in names if variants.variant(n).is_attention
               for i in range(len(sizes(n))) if _acc(results, n, i, far) is not None]
  if not attention:
    return
  att = min(attention, key=lambda p: sizes(p[0])[p[1]]["state_floats"])
  cache = sizes(att[0])[att[1]]["state_floats"]
  rivals = [(n, i) for n in names if variants.variant(n).is_recurrent
            for i in range(len(sizes(n)))
            if sizes(n)[i]["state_floats"] >= cache and
            (a := _acc(results, n, i, far)) is not None and a["mean"] is not None]
  label = lambda p: variants.variant(p[0]).label  # noqa: E731
  floats = lambda p: v.number(f"variants.{p[0]}.sizes.{p[1]}.state_floats", "d")  # noqa: E731
  mean = lambda p: v.number(_path(*p, far) + ".mean")  # noqa: E731
  if not rivals:
    v.say(f"No recurrent model here holds as many floats as the smallest attention cache "
          f"({label(att)}, {floats(att)}): a comparison at matched state is undecided at this "
          f"scale; larger recurrent states would decide.")
    return
  rec = max(rivals, key=lambda p: _acc(results, *p, far)["mean"])
  how = stats.compare(_acc(results, *att, far), _acc(results, *rec, far))
  matched = (f"at K = {far}, the {label(att)} with a cache of {floats(att)} floats scores "
             f"{mean(att)}, the {label(rec)} with a state of {floats(rec)} floats {mean(rec)}")
  if how == "higher":
    v.say(f"At matched state ({matched}; 95% intervals apart) attention still wins: here state "
          f"size alone does not explain the gap.")
  elif how == "undecided":
    v.say(f"At matched state ({matched}) the test cannot decide (fewer than two finite seeds): "
          f"undecided at this scale.")
  elif _acc(results, *rec, far)["mean"] >= SOLVED or how == "lower":
    v.say(f"At matched state ({matched}; 95% intervals not apart in attention's favour) the "
          f"recurrent model recalls as well: the gap follows the state size, as Arora et al. "
          f"(2023) found.")
  else:
    v.say(f"At matched state ({matched}) neither recalls the pairs (below {SOLVED}, 95% "
          f"intervals overlapping): undecided at this scale.")
