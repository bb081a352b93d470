"""The complexity experiment's verdict (experiments/complexity.py), and the layer names.

Exponents of the exact FLOP counts against n and d; the counts against the analytic
formulas; the crossover n* where attention costs more than the costliest recurrence; the
growth of the sequential depth with n; the measured maximum path length against Table 1's; the
dataflow depth of each linear recurrence in both scan forms (the parallel, associative form is
O(log n) when the depth added per doubling of n grows by at most LOG_DEPTH_GROWTH over the
measured span). A number in a sentence is cited from the results.
"""

from __future__ import annotations

from typing import Any

from seqresearch import models
from seqresearch.analysis import layer_costs
from seqresearch.study import variants, verdicts

# The recurrent cells with an analytic FLOP formula (layer_costs), beside attention's layers.
CELLS = layer_costs.CELLS
LAYERS = (*CELLS, "attention", "attention_core")
# Dataflow depth added per doubling of n may grow by at most this factor over the measured
# span for a depth to count as O(log n) (an O(n) depth's grows as n does: 16x over 16 .. 256).
LOG_DEPTH_GROWTH = 1.5

NAMES = {**{cell: f"{models.entry(cell).label} cell" if cell in models.names() else cell
            for cell in CELLS},
         "attention": "self-attention layer", "attention_core": "attention core (QKᵀ, AV)"}


def verdict(results: dict[str, Any]) -> verdicts.Verdict:
  v = verdicts.Verdict(results)
  last = len(results["lengths"]) - 2  # index of the last local exponent
  v.say(f"Counting exactly (scan bodies times their length) at d = "
        f"{v.number('width', 'd')}, one layer's matmul FLOPs grow with n as n^a with a = " +
        ", ".join(f"{v.number(f'by_n.{c}.exponent')} ({NAMES[c]})" for c in CELLS) +
        f" for the recurrent layers and a = {v.number('by_n.attention_core.exponent')} for "
        f"attention's core; the full attention layer's fitted exponent is "
        f"{v.number('by_n.attention.exponent')}, its local exponent rising from "
        f"{v.number('by_n.attention.local_exponents.0')} at the shortest n to "
        f"{v.number(f'by_n.attention.local_exponents.{last}')} at n/d = "
        f"{v.number('n_over_d', '.0f')}: the n² term dominates only for n ≫ d, because the "
        f"projections cost O(n·d²) too.")
  v.say(f"Against d at n = {v.number('length', 'd')}, the recurrent layers grow as d^" +
        ", d^".join(f"{v.number(f'by_d.{c}.exponent')} ({NAMES[c]})" for c in CELLS) +
        " — O(n·d²), not the essay's O(n·d³) — and attention's core as d^"
        f"{v.number('by_d.attention_core.exponent')}.")
  mismatched = [layer for layer in LAYERS
                if not (results["by_n"][layer]["matmul_equals_analytic"] and
                        results["by_d"][layer]["matmul_equals_analytic"])]
  if mismatched:
    v.say("The counts differ from the analytic formulas for " + ", ".join(mismatched) + ".")
  else:
    v.say("Every count equals the analytic matmul formula exactly.")
  # The cell with the most gates (the LSTM's G = 4) is the costliest recurrence per step.
  cell = max(CELLS, key=layer_costs.num_gates)
  c = f"crossover.{cell}"
  i = len(results["crossover"][cell]["widths"]) - 1
  v.say(f"An attention layer costs more FLOPs than the {NAMES[cell]} layer from n* = "
        f"{v.number(f'{c}.matmul.{i}', 'd')} at d = {v.number(f'{c}.widths.{i}', 'd')} "
        f"(analytic (G−2)·d = {v.number(f'{c}.analytic.{i}', '.0f')}; counting all FLOPs, "
        f"{v.number(f'{c}.total.{i}', 'd')}), and n* grows as d^"
        f"{v.number(f'{c}.matmul_exponent')}: attention is the cheaper layer only for n below "
        f"about {v.number(f'{c}.matmul_over_d.{i}', '.1f')}·d.")
  v.say("Sequential depth grows as n^a with a = " +
        ", ".join(f"{v.number(f'depths.{x}.sequential_exponent')} ({NAMES[x]})"
                  for x in (*CELLS, "attention")) +
        ", and the longest dependency chain as n^a with a = " +
        ", ".join(f"{v.number(f'depths.{x}.dataflow_exponent')} ({NAMES[x]})"
                  for x in (*CELLS, "attention")) + " (O(n): a >= 0.9; O(1): a <= 0.1).")
  paths = results["path_length"]
  measured = [x for x in (*CELLS, "attention") if paths[x]["lengths"] is not None]
  v.say("The maximum path length as defined, the fewest operations from position t−k to t, "
        "grows by " + ", ".join(f"{v.number(f'path_length.{x}.slope', '.1f')} ({NAMES[x]})"
                                for x in measured) +
        " operations per step of k (k = 1 .. "
        f"{v.number('path_length.attention.distances.' + str(len(paths['attention']['distances']) - 1), 'd')}).")
  off = [x for x in CELLS if x in measured and paths[x]["constant"]]
  off += [x for x in ("attention",) if x in measured and not paths[x]["constant"]]
  if off:
    v.contradicts("The measured path lengths of " + ", ".join(NAMES[x] for x in off) +
                  " do not follow Table 1's O(n) (recurrent) vs O(1) (self-attention).")
  _parallel_scan_verdict(v, results)
  return v


def _parallel_scan_verdict(v: verdicts.Verdict, results: dict[str, Any]) -> None:
  """The linear recurrences' depth in both scan forms. Test: O(log n) when the dataflow depth
  added per doubling of n at the last step is at most LOG_DEPTH_GROWTH times that at the
  first (constant, up to the fit); O(n) when it grows at least 1/LOG_DEPTH_GROWTH of the
  factor n grows over the same span."""
  scans = [n for n in variants.ordered(results.get("models", {}))
           if "associative" in results["models"][n]]
  if not scans:
    return
  parts, log_n, not_log, not_linear = [], [], [], []
  limit, ns = results["log_depth_growth"], results["depth_lengths"]
  for name in scans:
    path = f"models.{name}.associative.depths.dataflow_per_doubling"
    steps = results["models"][name]["associative"]["depths"]["dataflow_per_doubling"]
    seq = results["models"][name]["depths"]["dataflow_per_doubling"]
    label = variants.variant(name).label
    seq_path = f"models.{name}.depths.dataflow_per_doubling"
    parts.append(f"{label} +{v.number(f'{path}.0', '.0f')} → +"
                 f"{v.number(f'{path}.{len(steps) - 1}', '.0f')} in parallel against +"
                 f"{v.number(f'{seq_path}.0', '.0f')} → +"
                 f"{v.number(f'{seq_path}.{len(seq) - 1}', '.0f')} in sequence")
    (log_n if 0 < steps[-1] <= limit * steps[0] else not_log).append(label)
    if not (seq[0] > 0 and seq[-1] / seq[0] >= ns[-2] / ns[0] / limit):
      not_linear.append(label)
  growth = v.number("log_depth_growth", ".1f")
  v.say(f"The linear recurrences in both scan forms (n = {v.number('depth_lengths.0', 'd')} .. "
        f"{v.number(f'depth_lengths.{len(ns) - 1}', 'd')}), dataflow depth added per doubling "
        f"of n at the first and the last step: " + "; ".join(parts) + ". " +
        (f"The parallel (associative) scan's depth grows as O(log n) for "
         f"{', '.join(log_n)} (test: the depth added per doubling grows by at most "
         f"{growth}x over the span; the sequential form's grows with n, at least "
         f"1/{growth} as fast): the essay's O(n) sequential operations belong to "
         f"the nonlinear recurrences, not to recurrence as such." if log_n else "") +
        (f" Not O(log n) by that test: {', '.join(not_log)}." if not_log else "") +
        (f" Sequential form not O(n) by that test: {', '.join(not_linear)}." if not_linear
         else ""))
