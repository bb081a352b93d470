"""The capacity experiment's verdict (experiments/capacity.py): the tests and their sentences.

MQAR: per recurrent model, its largest state against its smallest at equal K; attention
across K; the best attention model against the best recurrent one at each K; the two at
matched state. Long copy: whether the length, the state size, both or neither explain a
model's accuracy. Comparisons are of two 95% intervals (`stats.compare`: apart, overlapping,
or undecided); a cell counts as recalled from a mean of SOLVED and as above chance when its
interval clears chance. Numbers from the results are cited (`verdicts`); counts of seeds and
the thresholds themselves are printed as such.
"""

from __future__ import annotations

from typing import Any

from seqresearch.study import stats, variants, verdicts

SOLVED = 0.9  # accuracy from which K pairs count as recalled, not merely above chance


def _path(name: str, i: int, k: int) -> str:
  return f"variants.{name}.sizes.{i}.by_pairs.{k}.accuracy"


def verdict(results: dict[str, Any]) -> verdicts.Verdict:
  v = verdicts.Verdict(results)
  _mqar_verdict(v, results)
  _long_copy_verdict(v, results["long_copy"])
  if results["failed_runs"]:
    v.say(f"{len(results['failed_runs'])} run(s) failed and are left out.")
  return v


def _mqar_verdict(v: verdicts.Verdict, results: dict[str, Any]) -> None:
  found, pairs = results["variants"], results["pairs"]
  if not found:
    v.say("No MQAR run finished.")
    return
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


# What explains a model's long-copy accuracy, from two interval tests (see `_explained_by`).
EXPLAINED = {
    "both": "by both the length and the state size",
    "state": "by the state size",
    "length": "by the length (the distance) alone",
    "neither": "by neither: it copies every length at its smallest state",
    "unlearnt": "by nothing it learnt: no size is above chance",
    "undecided": "undecided at this scale",
}


def _explained_by(sizes: list[dict[str, Any]], near: str, far: str,
                  chance: float) -> str:
  """A key of EXPLAINED for one model's long-copy sizes (smallest state first).

  Length: at the largest state, accuracy at the longest L is below that at the shortest
  (95% intervals apart) — more state did not remove the fall. State: at the longest L, the
  largest state is above the smallest (intervals apart). Both, either, or neither; a model
  whose intervals are nowhere above chance learnt nothing, and one at or above SOLVED at the
  longest L with its smallest state needs no more state.
  """
  small, large = sizes[0]["by_length"], sizes[-1]["by_length"]
  if far not in large or near not in large or far not in small:
    return "undecided"
  if not any(_above(size["by_length"][b], chance) for size in sizes
             for b in (near, far) if b in size["by_length"]):
    return "unlearnt"
  length = near != far and stats.compare(large[far], large[near]) == "lower"
  state = len(sizes) > 1 and stats.compare(large[far], small[far]) == "higher"
  if length and state:
    return "both"
  if state or length:
    return "state" if state else "length"
  if small[far]["mean"] is not None and small[far]["mean"] >= SOLVED and \
      stats.compare(large[far], small[far]) != "undecided":
    return "neither"
  return "undecided"


def _long_copy_verdict(v: verdicts.Verdict, long_copy: dict[str, Any]) -> None:
  found = long_copy["variants"]
  if not found:
    v.say("No long-string copy run finished.")
    return
  names = variants.ordered(found)
  near, far = long_copy["labels"][0], long_copy["labels"][-1]
  label = lambda n: variants.variant(n).label  # noqa: E731
  cell = lambda n, i, b: f"long_copy.variants.{n}.sizes.{i}.by_length.{b}"  # noqa: E731
  floats = lambda n, i: v.number(f"long_copy.variants.{n}.sizes.{i}.state_floats", "d")  # noqa: E731
  last = lambda n: len(found[n]["sizes"]) - 1  # noqa: E731
  v.say(f"On long-string copy (chance {v.number('long_copy.chance', '.3f')} per symbol), at "
        f"the longest strings, L = {far}, per-symbol accuracy is " + "; ".join(
            f"{label(n)} " + ", ".join(
                f"{v.pm(cell(n, i, far))} (state {floats(n, i)})"
                for i, size in enumerate(found[n]["sizes"]) if far in size["by_length"])
            for n in names) + " (mean ± 95% CI over seeds; state in floats).")
  verdict_of = {n: _explained_by(found[n]["sizes"], near, far, long_copy["chance"])
                for n in names}
  test = (f"tests: at the largest state, L = {far} against L = {near}; at L = {far}, the "
          "largest state against the smallest; 95% intervals that do not overlap")
  for key, words in EXPLAINED.items():
    chosen = [n for n in names if verdict_of[n] == key]
    if not chosen:
      continue
    detail = ", ".join(
        f"{label(n)} ({v.number(cell(n, last(n), near) + '.mean')} → "
        f"{v.number(cell(n, last(n), far) + '.mean')} with L at its largest state; "
        f"{v.number(cell(n, 0, far) + '.mean')} → {v.number(cell(n, last(n), far) + '.mean')} "
        f"with the state at L = {far})"
        if key not in ("undecided", "unlearnt") else label(n) for n in chosen)
    if key == "undecided":
      v.say(f"Whether the length or the state size explains long-copy accuracy is {words} "
            f"for {detail}.")
    else:
      v.say(f"Long-copy accuracy is explained {words} for {detail}" +
            (f" ({test})." if key in ("both", "state", "length") else "."))
  attention_falls = [n for n in names if variants.variant(n).is_attention and
                     verdict_of[n] in ("length", "both")]
  for n in attention_falls:
    # The window of the largest size, whose fall with L is the verdict's (the run's own).
    window = found[n]["sizes"][-1].get("attention_window")
    if window is None:
      v.say(f"The {label(n)}'s accuracy falls with L although its key-value cache holds the "
            f"whole string: the length, not the state, limits it here (training, or "
            f"positions).")
    else:  # restricted attention: a symbol L + 1 positions back leaves the window at L + 1 >= r
      size = f"long_copy.variants.{n}.sizes.{last(n)}.attention_window"
      v.say(f"The {label(n)} attends within a window of {v.number(size, 'd')} positions per "
            f"layer (the query itself included), so its cache does not hold the whole string: "
            f"a symbol L + 1 positions back is outside one layer's window once L + 1 >= "
            f"{v.number(size, 'd')} (reaching it takes a second hop).")
  recurrent = [n for n in names if variants.variant(n).is_recurrent]
  if recurrent and all(verdict_of[n] in ("undecided", "unlearnt") for n in recurrent):
    v.say("For the recurrent models whether distance or state size explains long-copy accuracy "
          "is undecided at this scale; longer training, more seeds and more sizes would decide.")


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
  elif _acc(results, *rec, far)["mean"] >= SOLVED or (
      how == "lower" and _above(_acc(results, *att, far), results["chance"][str(far)])):
    v.say(f"At matched state ({matched}; 95% intervals not apart in attention's favour) the "
          f"recurrent model recalls as well: the gap follows the state size, as Arora et al. "
          f"(2023) found.")
  else:  # a recurrence above an attention point that learnt nothing shows nothing
    v.say(f"At matched state ({matched}) neither recalls the pairs (below {SOLVED}, or the "
          f"attention point not above chance): undecided at this scale.")
