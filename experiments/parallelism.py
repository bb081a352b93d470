"""Question 4: does the Transformer's O(1) sequential depth make it faster in wall time?

Runs: none (untrained models; timing does not depend on the weights).
Analysis: one layer of each model of the table (`variants.sized_settings`: width d) inside its
token LM, at each width d of the scale and each sequence length n (so that n < d, n ≈ d and
n > d all occur): the min / median / max wall time of the jitted forward pass and of
forward + backward (the gradient of the mean cross-entropy), the FLOPs of the very program
that is timed (`analysis.flops.flop_count` on the same function, its attention implementation
included) and the FLOP rate it achieves, the sequential depth of the programs (scan steps; 1
for straight-line code) and the dataflow depth (longest chain of dependent primitives), and
the load average before, during and after.

How a time difference is split (the verdict): in each cell (n, d), the fastest model on the
essay's attention side against the fastest on its recurrent side. Their time ratio is the
ratio of their FLOPs (work) divided by the ratio of their FLOP rates (use of the hardware):
t_a / t_r = (F_a / F_r) / (R_a / R_r). Attention slower at a FLOP rate no lower than the
recurrence's does more work; attention faster at a higher FLOP rate uses the parallel
hardware better (the recurrence's O(n) sequential steps leave it idle). The test: times (and
rates, F divided by the slowest and the fastest call) are told apart only where the ranges
[min, max] of the timed calls do not overlap. The FLOPs are counted with
`flop_count(strict=False)`, so a primitive without a counting rule adds 0: such primitives are
stored per point (`train_uncounted`) and named in the table and the verdict, and a cell whose
count is incomplete never counts against the essay.
Figure: time and FLOP rate against n, one panel per width; depths against n.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqresearch import models
from seqresearch.analysis import fits, flops, gradient_path
from seqresearch.study import markdown, plots, runner, stats, variants, verdicts

TITLE = "Parallelism: wall time, work and FLOP rate versus n at several widths"
CLAIM = ("A recurrent layer needs O(n) sequential operations, self-attention O(1), so "
         "attention parallelises across positions and trains faster on parallel hardware.")
SWEEPS = ()
TIMED = True  # the report runs this analysis alone, so nothing else competes for the cores
LINEAR, FLAT = 0.9, 0.1  # depth exponents that count as O(n) and as O(1)
REGIME_FACTOR = 2  # n ≈ d when d / 2 < n < 2·d; below: n < d, above: n > d
VOCAB = 16

# Why attention is faster or slower in a cell: (time, attention's FLOP rate) -> cause.
CAUSES = {
    "more work": "attention is slower at a FLOP rate no lower: it does more work",
    "worse hardware use": "attention is slower at a lower FLOP rate: it uses the hardware worse",
    "better hardware use": ("attention is faster at a higher FLOP rate: the recurrence's "
                            "sequential steps leave the hardware idle"),
    "less work": "attention is faster at a FLOP rate no higher: it does less work",
    "level": "the times are level within the spread of the timed calls",
}


def _programs(name: str, width: int, length: int, batch: int):
  """(forward, forward+backward, params, tokens) of one model at sequence length `length`."""
  model = models.build_model(variants.sized_settings(name, width, length), vocab_size=VOCAB,
                             rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)

  def forward(params, tokens_BxT):
    return nnx.merge(graphdef, params)(tokens_BxT)

  def loss(params, tokens_BxT):
    logits_BxTxV = forward(params, tokens_BxT)
    return gradient_path.cross_entropy(logits_BxTxV.reshape(-1, VOCAB),
                                       tokens_BxT.reshape(-1)).mean()

  tokens_BxT = jax.random.randint(jax.random.key(1), (batch, length), 0, VOCAB, jnp.int32)
  return forward, jax.value_and_grad(loss), params, tokens_BxT


def _timings_ms(fn, args, repetitions: int) -> list[float]:
  """Wall time in ms of each of `repetitions` calls, after one call that compiles and warms up."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repetitions):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(1e3 * (time.perf_counter() - start))
  return times


def _exponent(xs, ys) -> float | None:
  """The fitted exponent of ys against xs; None (JSON null) with fewer than two lengths."""
  return fits.fit_power_law(xs, ys)[0] if len(set(xs)) > 1 else None


def regime(n: int, d: int) -> str:
  """'n < d', 'n ≈ d' or 'n > d' (n ≈ d within a factor REGIME_FACTOR either way)."""
  if n * REGIME_FACTOR <= d:
    return "n < d"
  if n >= REGIME_FACTOR * d:
    return "n > d"
  return "n ≈ d"


def measure(name: str, width: int, lengths: list[int], batch: int, repetitions: int,
            max_dataflow_length: int) -> dict[str, Any]:
  """Timings, FLOPs, FLOP rates and depths of model `name` at width d over the lengths n.

  Returns:
    Lists over `lengths`: forward_ms, train_ms (median) with train_ms_min / train_ms_max,
    train_flops (of the timed forward+backward program), train_uncounted (its primitives
    without a FLOP rule, counted as 0; [] when complete), train_gflops_per_s (median; _min,
    _max from the slowest and the fastest call), sequential_depth (forward),
    train_sequential_depth, load_average (1-minute, before each point); dataflow_depth
    {str(n): depth} for n <= max_dataflow_length; exponents of n.
  """
  rows: dict[str, Any] = {k: [] for k in (
      "forward_ms", "train_ms", "train_ms_min", "train_ms_max", "train_flops",
      "train_gflops_per_s", "train_gflops_per_s_min", "train_gflops_per_s_max",
      "sequential_depth", "train_sequential_depth", "load_average", "train_uncounted")}
  rows["dataflow_depth"] = {}
  for n in lengths:
    rows["load_average"].append(os.getloadavg()[0])
    forward, train, params, tokens = _programs(name, width, n, batch)
    rows["forward_ms"].append(statistics.median(
        _timings_ms(jax.jit(forward), (params, tokens), repetitions)))
    train_ms = _timings_ms(jax.jit(train), (params, tokens), repetitions)
    rows["train_ms"].append(statistics.median(train_ms))
    rows["train_ms_min"].append(min(train_ms))
    rows["train_ms_max"].append(max(train_ms))
    # The FLOPs of the very program timed (its attention implementation included).
    counted = flops.flop_count(train, params, tokens, strict=False)
    rows["train_flops"].append(count := counted.total)
    rows["train_uncounted"].append(list(counted.uncounted))
    rows["train_gflops_per_s"].append(count / rows["train_ms"][-1] / 1e6)
    rows["train_gflops_per_s_min"].append(count / max(train_ms) / 1e6)
    rows["train_gflops_per_s_max"].append(count / min(train_ms) / 1e6)
    rows["sequential_depth"].append(flops.sequential_depth(forward, params, tokens))
    rows["train_sequential_depth"].append(flops.sequential_depth(train, params, tokens))
    if n <= max_dataflow_length:
      rows["dataflow_depth"][str(n)] = flops.dataflow_depth(forward, params, tokens)
  depth_ns = [int(n) for n in rows["dataflow_depth"]]
  rows["exponents"] = {
      "forward_ms": _exponent(lengths, rows["forward_ms"]),
      "train_ms": _exponent(lengths, rows["train_ms"]),
      "train_flops": _exponent(lengths, rows["train_flops"]),
      "sequential_depth": _exponent(lengths, rows["sequential_depth"]),
      "dataflow_depth": _exponent(depth_ns, [rows["dataflow_depth"][str(n)] for n in depth_ns]),
  }
  return rows


def _apart(lo_a: float, hi_a: float, lo_b: float, hi_b: float) -> str:
  """'higher', 'lower' or 'overlapping': range [lo_a, hi_a] against [lo_b, hi_b]."""
  if lo_a > hi_b:
    return "higher"
  if hi_a < lo_b:
    return "lower"
  return "overlapping"


def uncounted(rows: dict[str, Any], i: int) -> list[str]:
  """Primitives counted as 0 in the FLOPs of point i of `measure`'s rows (older results: [])."""
  return list(rows.get("train_uncounted", [[]] * (i + 1))[i])


def compare(by_width: dict[str, dict[str, Any]], lengths: list[int],
            widths: list[int]) -> dict[str, list[dict[str, Any] | None]]:
  """Per width and length: the fastest attention model against the fastest recurrent one of
  Table 1's rows (the nonlinear recurrences: the linear ones are not in the essay's table).

  Args:
    by_width: {model: {str(d): rows of `measure`}}.
    lengths, widths: the grid.

  Returns:
    {str(d): [cell per n]}; a cell is None where a side has no model, else {'n', 'width',
    'regime', 'attention', 'recurrent' (model names), 'time_ratio' (median t_a / t_r),
    'flop_ratio' (F_a / F_r), 'rate_ratio' (median R_a / R_r), 'time' ('faster', 'slower' or
    'level': attention's [min, max] against the recurrence's), 'rate' ('higher', 'lower' or
    'overlapping': attention's FLOP-rate range against the recurrence's), 'cause' (a key of
    CAUSES), 'uncounted' (primitives without a FLOP rule in either program, counted as 0:
    the FLOP and rate ratios are then incomplete)}.
  """
  attention = [m for m in by_width if variants.variant(m).is_attention]
  recurrent = [m for m in by_width if variants.variant(m).family == "recurrent"]
  out = {}
  for d in widths:
    cells: list[dict[str, Any] | None] = []
    for i, n in enumerate(lengths):
      if not attention or not recurrent:
        cells.append(None)
        continue
      a = min(attention, key=lambda m: by_width[m][str(d)]["train_ms"][i])
      r = min(recurrent, key=lambda m: by_width[m][str(d)]["train_ms"][i])
      ra, rr = by_width[a][str(d)], by_width[r][str(d)]
      when = _apart(ra["train_ms_min"][i], ra["train_ms_max"][i],
                    rr["train_ms_min"][i], rr["train_ms_max"][i])
      speed = {"higher": "slower", "lower": "faster", "overlapping": "level"}[when]
      rate = _apart(ra["train_gflops_per_s_min"][i], ra["train_gflops_per_s_max"][i],
                    rr["train_gflops_per_s_min"][i], rr["train_gflops_per_s_max"][i])
      if speed == "slower":
        cause = "worse hardware use" if rate == "lower" else "more work"
      elif speed == "faster":
        cause = "better hardware use" if rate == "higher" else "less work"
      else:
        cause = "level"
      cells.append({
          "n": n, "width": d, "regime": regime(n, d), "attention": a, "recurrent": r,
          "time_ratio": ra["train_ms"][i] / rr["train_ms"][i],
          "flop_ratio": ra["train_flops"][i] / rr["train_flops"][i],
          "rate_ratio": ra["train_gflops_per_s"][i] / rr["train_gflops_per_s"][i],
          "time": speed, "rate": rate, "cause": cause,
          "uncounted": sorted(set(uncounted(ra, i)) | set(uncounted(rr, i)))})
    out[str(d)] = cells
  return out


def run(study: runner.Study) -> dict[str, Any]:
  s = study.settings.parallelism
  lengths, widths = list(s.lengths), list(s.widths)
  device = jax.devices()[0]
  out: dict[str, Any] = {"backend": device.platform, "device": device.device_kind,
                         "cpu_count": os.cpu_count(), "lengths": lengths, "widths": widths,
                         "batch_size": s.batch_size, "repetitions": s.repetitions,
                         "models": {}, "load_average_before": list(os.getloadavg())}
  for name in study.config.study_models(study.scale):
    out["models"][name] = {str(d): measure(name, d, lengths, s.batch_size, s.repetitions,
                                           s.max_dataflow_length) for d in widths}
  out["load_average_after"] = list(os.getloadavg())
  return derive(out)


def derive(results: dict[str, Any]) -> dict[str, Any]:
  """The comparisons, a function of the timed rows alone: recomputed when a report is
  restated (`report.restate_report`), so a fix to the comparison needs no new timing."""
  results["comparisons"] = compare(results["models"], results["lengths"], results["widths"])
  return results


def figures(results: dict[str, Any], out_dir: str) -> list[str]:
  ns, widths = results["lengths"], results["widths"]
  fig, axes = plots.figure(ncols=len(widths), nrows=2, width=4.2)
  for j, d in enumerate(widths):
    time_ax, rate_ax = axes[j], axes[len(widths) + j]
    for name, by_width in results["models"].items():
      rows, style = by_width[str(d)], variants.style(name)
      time_ax.loglog(ns, rows["train_ms"], marker="o", color=style["color"],
                     label=style["label"])
      time_ax.fill_between(ns, rows["train_ms_min"], rows["train_ms_max"],
                           color=style["color"], alpha=0.2)
      time_ax.loglog(ns, rows["forward_ms"], marker=".", ls=":", color=style["color"])
      rate_ax.loglog(ns, rows["train_gflops_per_s"], marker="o", color=style["color"],
                     label=style["label"])
    for ax in (time_ax, rate_ax):
      ax.axvline(d, color="0.5", ls="--", lw=0.8)  # n = d
      plots.integer_ticks(ax, ns)
    device = f" on {results['backend']} ({results['device']})" if j == 0 else ""  # named once
    time_ax.set(xlabel="sequence length $n$", ylabel="ms (solid: fwd+bwd, dotted: fwd)",
                title=f"$d = {d}$, wall time{device}")
    rate_ax.set(xlabel="sequence length $n$", ylabel="GFLOP/s (fwd+bwd)",
                title=f"$d = {d}$, achieved FLOP rate")
  axes[0].legend(fontsize=6)
  paths = [plots.save(fig, os.path.join(out_dir, "parallelism.png"))]
  fig, (ax,) = plots.figure(width=5.5)
  d0 = str(widths[0])
  for name, by_width in results["models"].items():
    rows, color = by_width[d0], variants.style(name)["color"]
    label = variants.variant(name).label
    ax.loglog(ns, rows["sequential_depth"], marker="o", color=color,
              label=f"{label}: sequential steps")
    depth_ns = sorted(rows["dataflow_depth"], key=int)
    ax.loglog([int(n) for n in depth_ns], [rows["dataflow_depth"][n] for n in depth_ns],
              marker="x", ls=":", color=color, label=f"{label}: dataflow depth")
  plots.integer_ticks(ax, ns)
  ax.set(xlabel="sequence length $n$", ylabel="steps",
         title=f"Depth of the forward program ($d = {d0}$)")
  ax.legend(fontsize=6)
  paths.append(plots.save(fig, os.path.join(out_dir, "parallelism_depth.png")))
  return paths


def tables(results: dict[str, Any]) -> str:
  ns = results["lengths"]
  parts = [f"Forward+backward wall time in ms, median [min, max] of {results['repetitions']} "
           f"calls; its FLOPs (counted on the timed program) in GFLOP; the FLOP rate "
           f"achieved; sequential steps of the forward program ('FLOPs omit' names primitives "
           f"without a FLOP rule, counted as 0). Batch "
           f"{results['batch_size']}, on {results['backend']} ({results['device']}, "
           f"{results['cpu_count']} CPU cores), load average "
           f"{stats.fmt(results['load_average_before'][0], '.1f')} before and "
           f"{stats.fmt(results['load_average_after'][0], '.1f')} after."]
  for d in results["widths"]:
    rows = []
    for name, by_width in results["models"].items():
      r = by_width[str(d)]
      rows.append([variants.variant(name).label] + [
          f"{stats.fmt(t)} [{stats.fmt(lo)}, {stats.fmt(hi)}]; {stats.fmt(f / 1e9, '.3g')}; "
          f"{stats.fmt(g)} GFLOP/s; {s}" +
          (f" (FLOPs omit {', '.join(uncounted(r, i))})" if uncounted(r, i) else "")
          for i, (t, lo, hi, f, g, s) in enumerate(zip(
              r["train_ms"], r["train_ms_min"], r["train_ms_max"], r["train_flops"],
              r["train_gflops_per_s"], r["sequential_depth"]))] +
          [stats.fmt(r["exponents"]["train_ms"])])
    cells = results["comparisons"][str(d)]
    rows.append(["attention / recurrent"] + [
        (f"time ×{stats.fmt(c['time_ratio'])}, FLOPs ×{stats.fmt(c['flop_ratio'])}, "
         f"rate ×{stats.fmt(c['rate_ratio'])}: {c['cause']}") if c else "–" for c in cells] +
        [""])
    parts.append(f"Width d = {d}:\n\n" + markdown.table(
        ["model"] + [f"n = {n} ({regime(n, d)})" for n in ns] + ["time ∝ n^a"], rows))
  return "\n\n".join(parts)


def _depth_sentences(v: verdicts.Verdict, results: dict[str, Any]) -> None:
  m, ns, d0 = results["models"], results["lengths"], str(results["widths"][0])
  last = len(ns) - 1
  label = lambda name: variants.variant(name).label  # noqa: E731
  recurrent = [n for n in m if variants.variant(n).is_recurrent]
  attention = [n for n in m if variants.variant(n).is_attention]
  v.say(f"At d = {d0} the compiled forward program has " +
        ", ".join(f"{v.number(f'models.{n}.{d0}.sequential_depth.{last}', 'd')} ({label(n)})"
                  for n in m) + f" sequential steps at n = {ns[-1]}, and its longest "
        "dependency chain grows as n^a with a = " +
        ", ".join(f"{v.number(f'models.{n}.{d0}.exponents.dataflow_depth')} ({label(n)})"
                  for n in m) + f" (O(n): a >= {LINEAR}; O(1): a <= {FLAT}).")
  exponent = {n: m[n][d0]["exponents"]["dataflow_depth"] for n in m}
  if any(a is None for a in exponent.values()):
    v.say("With a single length no depth exponent is fitted: undecided at this scale.")
    return
  # Table 1's rows: the nonlinear recurrences and attention. The linear recurrences are not in
  # it: in their sequential form (the CPU's scan='auto') they take n steps, and a fixed depth
  # per layer besides the scan keeps a power law fitted to their total depth below 1 over these
  # n (the complexity section tests their depth added per doubling of n instead).
  essay = [n for n in recurrent if variants.variant(n).family == "recurrent"]
  linear = [n for n in recurrent if n not in essay]
  if linear:
    v.say("The linear recurrences, " + ", ".join(f"the {label(n)}" for n in linear) + ", are "
          "not in Table 1; the test below is not applied to them (their depth per doubling of "
          "n is measured in the complexity section).")
  off = [n for n in essay if exponent[n] < LINEAR] + \
      [n for n in attention if exponent[n] > FLAT]
  if off:
    v.contradicts("Against Table 1's O(n) (recurrent) and O(1) (self-attention) sequential "
                  "operations, the depth of " + ", ".join(f"the {label(n)}" for n in off) +
                  " grows otherwise.")
  else:
    v.say("That is Table 1's O(n) against O(1) sequential operations.")


def verdict(results: dict[str, Any]) -> verdicts.Verdict:
  v = verdicts.Verdict(results)
  label = lambda name: variants.variant(name).label  # noqa: E731
  _depth_sentences(v, results)
  rows = [label(n) for n in variants.ordered(results["models"])
          if variants.variant(n).family == "recurrent"]  # Table 1's recurrences timed here
  v.say(f"Timed on {results['backend']} ({results['device']}, {results['cpu_count']} CPU "
        f"cores) at load average {v.number('load_average_before.0', '.1f')} before and "
        f"{v.number('load_average_after.0', '.1f')} after. The test in each cell (n, d): the "
        "fastest attention model against the fastest recurrent one of Table 1's rows timed "
        f"here ({', '.join(rows) or 'none'}), told apart only where "
        "the [min, max] ranges of their timed calls (and of the FLOP rates they give) do not "
        "overlap; time ratio = FLOP ratio / FLOP-rate ratio.")
  found: dict[str, list[str]] = {cause: [] for cause in CAUSES}
  rate_higher, incomplete = [], []  # cells: attention's rate range above; FLOPs incomplete
  for d in results["widths"]:
    clauses = []
    for i, c in enumerate(results["comparisons"][str(d)]):
      if c is None:
        continue
      p = f"comparisons.{d}.{i}"
      where = f"n = {c['n']}, d = {d}"
      if c.get("uncounted"):
        incomplete.append(f"{where} (omitting {', '.join(c['uncounted'])})")
      if not (c.get("uncounted") and c["cause"] == "worse hardware use"):
        found[c["cause"]].append(where)  # an incomplete count cannot show a lower rate
      if c["rate"] == "higher":
        rate_higher.append(where)
      clauses.append(
          f"n = {c['n']} ({c['regime']}): the {label(c['attention'])} takes "
          f"{v.number(p + '.time_ratio')}× the time of the {label(c['recurrent'])} for "
          f"{v.number(p + '.flop_ratio')}× the FLOPs at {v.number(p + '.rate_ratio')}× the "
          f"FLOP rate ({c['cause']})")
    if clauses:
      v.say(f"At d = {d}: " + "; ".join(clauses) + ".")
  if not any(found.values()) and not incomplete:
    v.say("No attention model or no recurrent model was timed: nothing to compare.")
    return v
  if incomplete:
    v.say("The FLOP counts omit primitives without a counting rule (counted as 0), so the "
          "FLOP and rate ratios are incomplete (a lower attention rate there is not held "
          "against the essay) at: " + "; ".join(incomplete) + ".")
  if found["better hardware use"]:
    v.say("Where the recurrence cannot use the parallel hardware (attention faster at a "
          "FLOP rate whose range lies above the recurrence's): " +
          "; ".join(found["better hardware use"]) + ".")
  elif rate_higher:
    v.say("Attention's FLOP rate lies above the recurrence's range at " +
          "; ".join(rate_higher) + ", yet attention is not faster there (it does more "
          "work, or the times are level): the recurrence uses the hardware less well, but in "
          "no cell does that make it the slower one.")
  else:
    v.say("In no cell does attention reach a FLOP rate above the recurrence's range: on this "
          "backend the recurrence's sequential steps cost no measurable use of the hardware.")
  if found["more work"]:
    v.say("Where attention is slower because it does more work (its FLOP rate not "
          "distinguishably lower): " + "; ".join(found["more work"]) + ". That is more "
          "arithmetic per token (the FLOP ratios above), not a failure to parallelise.")
  if found["less work"]:
    v.say("Where attention is faster only by doing less work (its FLOP rate not higher): " +
          "; ".join(found["less work"]) + ".")
  if found["level"]:
    v.say("Level within the spread of the timed calls (undecided at this scale; more "
          "repetitions on an idle machine would decide): " + "; ".join(found["level"]) + ".")
  if found["worse hardware use"]:
    sentence = (f"On this {results['backend']} backend attention's O(1) sequential depth did "
                "not turn into better use of the hardware: attention is slower at a lower FLOP "
                "rate than the recurrence at " + "; ".join(found["worse hardware use"]) + ".")
    if results["backend"] == "cpu":  # the essay's claim is about parallel hardware
      v.say(sentence + " A CPU of a few cores cannot test the essay's claim about parallel "
            "hardware, so this is not held against it; an accelerator would decide.")
    else:
      v.contradicts(sentence)
  return v
