"""Question 5: how do the FLOPs of one layer grow with n and d, and where do they cross?

Runs: none (the layers are traced abstractly; nothing is computed).
Analysis (`analysis.flops`, `analysis.layer_costs`): the exact FLOPs of one recurrent layer
(Elman RNN, LSTM, GRU; input and state width d) and of one self-attention layer (width d, with
its QKV and output projections), and of attention's core alone (QKᵀ, softmax, AV), counted on
the jaxpr with every scan body times its length: versus n at fixed d and versus d at fixed n;
fitted power-law exponents and local exponents between neighbouring points; the crossover n*
(attention costs more than the recurrent layer for n >= n*) at several d, counted and
analytic; sequential depth and dataflow depth of each layer against n. Together: Table 1 of
Vaswani et al. (2017), measured. The same FLOP exponents and depths for one layer of every
model of the table, as the model builds it (`variants.sized_settings`, width d; FLOPs of
`from_embeddings`, read-out included), so a model added to the table gets its own row.
Figure: FLOPs against n and against d; n* against d.
The verdict's tests: experiments/complexity_verdict.py.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqresearch import models
from seqresearch.analysis import fits
from seqresearch.analysis import flops
from seqresearch.analysis import layer_costs
from seqresearch.analysis import path_length
from seqresearch.models import attention
from seqresearch.models import linear_scan
from seqresearch.study import markdown, plots, runner, stats, variants

# The verdict, and the names of the layers it shares with the tables.
from experiments import complexity_verdict
from experiments.complexity_verdict import CELLS, LAYERS, LOG_DEPTH_GROWTH, NAMES

TITLE = "Complexity: FLOPs per layer versus n and d"
CLAIM = ("Complexity per layer is O(n·d²) for a recurrent layer (the essay prints O(n·d³), a "
         "typo) and O(n²·d) for self-attention, so attention is cheaper while n < d; sequential "
         "operations O(n) vs O(1); maximum path length O(n) vs O(1) (Vaswani et al. 2017, "
         "Table 1).")
SWEEPS = ()
verdict = complexity_verdict.verdict  # the experiment's verdict
VOCAB = 16  # vocabulary of the model rows (its read-out is counted)


def _core_program(n: int, d: int):
  """Attention's core, one head of width d: softmax(QKᵀ/√d)V with a causal mask."""
  spec = jax.ShapeDtypeStruct((n, d), jnp.float32)

  def fn(q_NxD, k_NxD, v_NxD):
    return attention.dot_product_attention_head(q_NxD, k_NxD, v_NxD,
                                                attention.causal_mask(n))[0]

  return fn, (spec, spec, spec)


def _program(layer: str, n: int, d: int):
  if layer == "attention":
    return layer_costs.attention_layer_program(n, d)
  if layer == "attention_core":
    return _core_program(n, d)
  return layer_costs.recurrent_layer_program(layer, n, d)


def _analytic(layer: str, n: int, d: int) -> int:
  if layer == "attention":
    return layer_costs.analytic_attention_matmul_flops(n, d)
  if layer == "attention_core":
    return layer_costs.analytic_attention_matmul_flops(n, d, include_projections=False)
  return layer_costs.analytic_recurrent_matmul_flops(layer, n, d)


def model_program(name: str, n: int, d: int, scan: str | None = None):
  """One layer of table model `name` at width d over n positions: (fn(params, x), args).

  `scan` ('sequential' or 'associative') overrides the scan form of a model that has one."""
  settings = variants.sized_settings(name, d, max_len=n)
  if scan is not None:
    settings = dataclasses.replace(settings, scan=scan)
  model = nnx.eval_shape(lambda: models.build_model(settings, vocab_size=VOCAB,
                                                    rngs=nnx.Rngs(0)))
  graphdef, params = nnx.split(model)
  x = jax.eval_shape(lambda p, t: nnx.merge(graphdef, p).embed(t), params,
                     jax.ShapeDtypeStruct((1, n), jnp.int32))

  def fn(params, x_BxNxE):
    return nnx.merge(graphdef, params).from_embeddings(x_BxNxE)

  return fn, (params, x)


def regime_exponents(xs: list[int], ys: list[float], boundary: float) -> dict[str, Any]:
  """Power-law exponents fitted separately below and above `boundary` (each end included).

  Attention's 8·n·d² + 4·n²·d changes regime where its two terms are equal (n = 2d): one fit
  across the change reports neither exponent. A regime with fewer than two points is None.
  """
  out: dict[str, Any] = {"boundary": boundary}
  for name, keep in (("below", lambda x: x <= boundary), ("above", lambda x: x >= boundary)):
    pts = [(x, y) for x, y in zip(xs, ys) if keep(x)]
    out[name] = fits.fit_power_law(*zip(*pts))[0] if len({x for x, _ in pts}) > 1 else None
  return out


def _curve(layer: str, points: list[tuple[int, int]], xs: list[int],
           program=None, boundary: float | None = None) -> dict[str, Any]:
  """FLOPs of `layer` at each (n, d) of `points`; power-law and local exponents against xs,
  and (with `boundary`) the exponents of each regime (`regime_exponents`).

  `program(n, d)` builds the program (default: the layer's); then no analytic count."""
  total, matmul, analytic = [], [], []
  for n, d in points:
    fn, args = (program or (lambda n, d: _program(layer, n, d)))(n, d)
    count = flops.flop_count(fn, *args, strict=program is None)
    total.append(count.total)
    matmul.append(count.matmul)
    analytic.append(_analytic(layer, n, d) if program is None else None)
  local = [math.log(matmul[i + 1] / matmul[i]) / math.log(xs[i + 1] / xs[i])
           for i in range(len(xs) - 1)]
  return {"total": total, "matmul": matmul, "analytic_matmul": analytic,
          "matmul_equals_analytic": matmul == analytic,
          "exponent": fits.fit_power_law(xs, matmul)[0],
          "total_exponent": fits.fit_power_law(xs, total)[0],
          "local_exponents": local,
          "regimes": regime_exponents(xs, matmul, boundary) if boundary else None}


def _depths(layer: str, lengths: list[int], d: int, program=None) -> dict[str, Any]:
  program = program or (lambda n, d: _program(layer, n, d))
  sequential = [flops.sequential_depth(*_flat(program(n, d))) for n in lengths]
  dataflow = [flops.dataflow_depth(*_flat(program(n, d))) for n in lengths]
  # Added dataflow depth per doubling of n: constant for O(log n) depth, doubling for O(n).
  per_doubling = [(b - a) / math.log2(m / n)
                  for n, m, a, b in zip(lengths, lengths[1:], dataflow, dataflow[1:])]
  return {"sequential": sequential, "dataflow": dataflow,
          "sequential_exponent": fits.fit_power_law(lengths, sequential)[0],
          "dataflow_exponent": fits.fit_power_law(lengths, dataflow)[0],
          "dataflow_per_doubling": per_doubling}


def _path_length(program, s) -> dict[str, Any]:
  """Fewest operations from position t-k to t (`analysis.path_length`) for k = 1 .. n-1, at
  n = s.path_length_n and width s.path_length_width, and its exponent in k. None with the
  reason where a program has a primitive without a rule."""
  n, d = s.path_length_n, s.path_length_width
  fn, (params, x) = program(n, d)
  ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k < n]
  x_BxNxD = jax.random.normal(jax.random.key(0), x.shape, x.dtype)
  try:
    lengths = path_length.path_length_by_distance(fn, path_length.concrete(params), x_BxNxD, ks)
  except (ValueError, TypeError) as e:  # a primitive without a rule (named in the reason)
    return {"distances": ks, "lengths": None, "exponent": None, "slope": None,
            "constant": None, "lengths_why": str(e)}
  unreachable = [k for k, length in zip(ks, lengths) if not np.isfinite(length)]
  if unreachable:  # e.g. a convolution whose receptive field ends before k
    return {"distances": ks, "lengths": lengths, "exponent": None, "slope": None,
            "constant": False, "unreachable": unreachable,
            "exponent_why": f"positions t-k with k in {unreachable} do not reach t"}
  slope = float(np.polyfit(ks, lengths, 1)[0])  # operations added per position of distance
  return {"distances": ks, "lengths": lengths, "slope": slope,
          "exponent": fits.fit_power_law(ks, lengths)[0], "constant": len(set(lengths)) == 1}


def _flat(program):
  fn, args = program
  return (fn, *args)


def run(study: runner.Study) -> dict[str, Any]:
  s = study.settings.complexity
  lengths, widths = list(s.lengths), list(s.widths)
  # Attention's two terms 8nd² and 4n²d are equal at n = 2d: the regimes of the fits.
  by_n = {layer: _curve(layer, [(n, s.width) for n in lengths], lengths,
                        boundary=2 * s.width) for layer in LAYERS}
  by_d = {layer: _curve(layer, [(s.length, d) for d in widths], widths,
                        boundary=s.length / 2) for layer in LAYERS}
  crossover = {}
  for cell in CELLS:
    rows = {"widths": list(s.crossover_widths), "analytic": [], "matmul": [], "total": []}
    for d in s.crossover_widths:
      rows["analytic"].append(layer_costs.crossover_n(d, cell))
      rows["matmul"].append(layer_costs.counted_crossover_n(d, cell))
      rows["total"].append(layer_costs.counted_crossover_n(d, cell, counter=flops.count_flops))
    rows["matmul_exponent"] = (fits.fit_power_law(rows["widths"], rows["matmul"])[0]
                               if min(rows["matmul"]) > 1 else float("nan"))
    rows["matmul_over_d"] = [n / d for n, d in zip(rows["matmul"], rows["widths"])]
    crossover[cell] = rows
  depth_lengths = list(s.depth_lengths)
  depths = {layer: _depths(layer, depth_lengths, s.width) for layer in LAYERS}
  paths = {layer: _path_length(lambda n, d, layer=layer: _program(layer, n, d), s)
           for layer in (*CELLS, "attention")}
  table_models = {}
  for name in study.config.study_models(study.scale):
    program = lambda n, d, name=name: model_program(name, n, d)  # noqa: E731
    table_models[name] = {
        "by_n": _curve(name, [(n, s.width) for n in lengths], lengths, program),
        "by_d": _curve(name, [(s.length, d) for d in widths], widths, program),
        "depths": _depths(name, depth_lengths, s.width, program),
        "path_length": _path_length(program, s)}
    scan = getattr(variants.sized_settings(name, s.width, max_len=s.length), "scan", None)
    if scan is not None:  # a linear recurrence: the form measured above, and the parallel one
      table_models[name]["scan"] = linear_scan.resolve_scan(scan)
      parallel = lambda n, d, name=name: model_program(name, n, d, "associative")  # noqa: E731
      table_models[name]["associative"] = {
          "by_n": _curve(name, [(n, s.width) for n in lengths], lengths, parallel),
          "by_d": _curve(name, [(s.length, d) for d in widths], widths, parallel),
          "depths": _depths(name, depth_lengths, s.width, parallel),
          "path_length": _path_length(parallel, s)}
  return {"width": s.width, "length": s.length, "lengths": lengths, "widths": widths,
          "n_over_d": lengths[-1] / s.width, "by_n": by_n, "by_d": by_d,
          "crossover": crossover, "depth_lengths": depth_lengths, "depths": depths,
          "path_length": paths, "log_depth_growth": LOG_DEPTH_GROWTH,
          "models": table_models}


def _color(layer: str) -> str:
  """A layer's colour: its model's from the table; attention's is the first attention model's."""
  if layer in models.names():
    return models.entry(layer).color
  attention_models = models.names("attention")
  return models.entry(attention_models[0]).color if attention_models else "black"


def figures(results: dict[str, Any], out_dir: str) -> list[str]:
  fig, (n_ax, d_ax, x_ax) = plots.figure(ncols=3, width=4.6)
  for layer in LAYERS:
    ls = ":" if layer == "attention_core" else "-"
    n_ax.loglog(results["lengths"], results["by_n"][layer]["matmul"], marker="o", ls=ls,
                color=_color(layer), label=NAMES[layer])
    d_ax.loglog(results["widths"], results["by_d"][layer]["matmul"], marker="o", ls=ls,
                color=_color(layer), label=NAMES[layer])
  plots.integer_ticks(n_ax, results["lengths"][::2])
  plots.integer_ticks(d_ax, results["widths"])
  n_ax.set(xlabel="sequence length $n$", ylabel="matmul FLOPs per example",
           title=f"one layer, $d$ = {results['width']}")
  d_ax.set(xlabel="width $d$", ylabel="matmul FLOPs per example",
           title=f"one layer, $n$ = {results['length']}")
  for cell, rows in results["crossover"].items():
    x_ax.plot(rows["widths"], rows["matmul"], marker="o", color=_color(cell),
              label=f"{NAMES[cell]}, counted")
    x_ax.plot(rows["widths"], rows["analytic"], ls="--", color=_color(cell),
              label=f"{NAMES[cell]}, $(G-2)\\cdot d$")
  plots.integer_ticks(x_ax, next(iter(results["crossover"].values()))["widths"])
  x_ax.set(xlabel="width $d$", ylabel="crossover $n^*$",
           title="attention costs more for $n \\geq n^*$")
  for ax in (n_ax, d_ax, x_ax):
    ax.legend(fontsize=6)
  return [plots.save(fig, os.path.join(out_dir, "complexity.png"))]


def tables(results: dict[str, Any]) -> str:
  rows = []
  for layer in LAYERS:
    bn, bd, dp = results["by_n"][layer], results["by_d"][layer], results["depths"][layer]
    rows.append([NAMES[layer], stats.fmt(bn["exponent"]),
                 stats.fmt(bn["local_exponents"][0]) + " → " +
                 stats.fmt(bn["local_exponents"][-1]),
                 stats.fmt(bd["exponent"]),
                 stats.fmt(bd["local_exponents"][0]) + " → " +
                 stats.fmt(bd["local_exponents"][-1]),
                 "yes" if bn["matmul_equals_analytic"] and bd["matmul_equals_analytic"] else "NO",
                 stats.fmt(dp["sequential_exponent"]), stats.fmt(dp["dataflow_exponent"])])
  out = [f"Exponents of the matmul FLOPs of one layer: against n = {results['lengths'][0]} .. "
         f"{results['lengths'][-1]} at d = {results['width']} (fit, and local exponent at the "
         f"first and last step), against d = {results['widths'][0]} .. {results['widths'][-1]} "
         f"at n = {results['length']}; whether the count equals the analytic formula; "
         f"exponents of the sequential and dataflow depth against n.", "",
         markdown.table(["layer", "n: fit", "n: local", "d: fit", "d: local",
                                "count = formula", "sequential depth", "dataflow depth"], rows),
         ""]
  crossover_rows = []
  for cell, r in results["crossover"].items():
    for i, d in enumerate(r["widths"]):
      crossover_rows.append([NAMES[cell], d, stats.fmt(r["analytic"][i], ".0f"),
                             r["matmul"][i], r["total"][i]])
  model_rows = [[label, scan, stats.fmt(r["by_n"]["total_exponent"]),
                 stats.fmt(r["by_d"]["total_exponent"]),
                 stats.fmt(r["depths"]["sequential_exponent"]), _dataflow_cell(r["depths"]),
                 _path_cell(r["path_length"])]
                for _, label, scan, r in _model_forms(results)]
  depth_ns = results["depth_lengths"]
  if model_rows:
    out += [f"Every model of the table, one layer as built (width d = {results['width']}; the "
            f"linear recurrences in both scan forms): exponents of all FLOPs against n and d, "
            f"of the sequential depth (scan steps) against n, the dataflow depth (longest chain "
            f"of dependent operations) at n = {depth_ns[0]} .. {depth_ns[-1]} with the depth "
            f"it adds per doubling of n (constant: O(log n); doubling: O(n)), and the path "
            f"length.", "",
            markdown.table(["model (one layer, as built)", "scan", "FLOPs ∝ n^a", "FLOPs ∝ d^a",
                            "sequential depth ∝ n^a", "dataflow depth (added per doubling)",
                            "path length t−k → t"], model_rows), ""]
  out += ["Crossover n* (attention's FLOPs exceed the recurrent layer's from n*): analytic "
          "(G−2)·d, counted matmul FLOPs, counted all FLOPs.", "",
          markdown.table(["recurrent layer", "d", "analytic", "counted (matmul)",
                          "counted (all)"], crossover_rows)]
  return "\n".join(out)


def _path_cell(p: dict[str, Any]) -> str:
  if p["lengths"] is None:
    return "n/a (no rule for a primitive)"
  if p.get("unreachable"):
    return f"unreachable for k >= {p['unreachable'][0]} (receptive field)"
  return (f"{p['lengths'][0]:.0f} .. {p['lengths'][-1]:.0f} ops for k = {p['distances'][0]} .. "
          f"{p['distances'][-1]} (∝ k^{stats.fmt(p['exponent'])})")


def _dataflow_cell(depths: dict[str, Any]) -> str:
  """'40 .. 88 (+12 .. +12)': the dataflow depth at the shortest and longest n, and the depth
  added per doubling of n at the first and last step."""
  df, step = depths["dataflow"], depths.get("dataflow_per_doubling") or [None]
  return (f"{df[0]} .. {df[-1]} (+{stats.fmt(step[0], '.0f')} .. +{stats.fmt(step[-1], '.0f')})")


def _model_forms(results: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
  """(model, label, scan form, measurements) of every model row: a linear recurrence twice, in the
  scan form its default resolves to on this backend and in the associative (parallel) one."""
  out = []
  for name in variants.ordered(results.get("models", {})):
    r = results["models"][name]
    label = variants.variant(name).label
    out.append((name, label, r.get("scan", "—"), r))
    if "associative" in r and r.get("scan") != "associative":
      out.append((name, f"{label} (parallel scan)", "associative", r["associative"]))
  return out


# Vaswani et al. (2017) Table 1 rows of the models beyond self-attention and recurrence:
# (row name, complexity per layer, sequential operations, maximum path length).
ESSAY_ROWS = {"conv": ("Convolutional", "O(k·n·d²)", "O(1)", "O(log_k(n)) dilated, O(n/k)"),
              "local_attention": ("Self-attention (restricted)", "O(r·n·d)", "O(1)", "O(n/r)")}


def table1(results: dict[str, Any], everything: dict[str, dict[str, Any]]) -> str:
  """Vaswani et al.'s Table 1 beside the same three quantities measured here.

  Args:
    results: this experiment's results.
    everything: every experiment's results by name (the parallelism timings, if present).
  """
  parallelism = everything.get("parallelism")
  def measured(layer: str) -> list[str]:
    bn, bd, dp = results["by_n"][layer], results["by_d"][layer], results["depths"][layer]
    ns = results["depth_lengths"]
    rn, rd = bn["regimes"], bd["regimes"]
    return [f"n ≫ d: FLOPs ∝ n^{stats.fmt(rn['above'])}·d^{stats.fmt(rd['below'])}; "
            f"n ≪ d: n^{stats.fmt(rn['below'])}·d^{stats.fmt(rd['above'])}",
            f"{dp['sequential'][0]} .. {dp['sequential'][-1]} for n = {ns[0]} .. {ns[-1]} "
            f"(∝ n^{stats.fmt(dp['sequential_exponent'])})",
            _path_cell(results["path_length"][layer]) if layer in results["path_length"]
            else "—"]

  rows = [["Self-attention (core)", "O(n²·d)", *measured("attention_core")[:1], "O(1)",
           *measured("attention_core")[1:2], "O(1)", *measured("attention_core")[2:]],
          ["Self-attention (layer, with projections)", "—", *measured("attention")[:1], "O(1)",
           *measured("attention")[1:2], "O(1)", *measured("attention")[2:]]]
  for cell in CELLS:
    m = measured(cell)
    rows.append([f"Recurrent ({NAMES[cell]})", "O(n·d²)", m[0], "O(n)", m[1], "O(n)", m[2]])
  # Every other model of the table, as built (one layer): the essay's row where it has one.
  essay_models = set(CELLS) | {"transformer"}
  for name, label, scan, r in _model_forms(results):
    if name in essay_models:
      continue
    row, flops_, sequential, path = ESSAY_ROWS.get(
        name, (f"Linear recurrence, {'parallel' if scan == 'associative' else 'sequential'} "
               f"scan", "— (not in the essay)", "—", "—"))
    ns = results["depth_lengths"]
    rows.append([f"{row} ({variants.variant(name).label})", flops_,
                 f"FLOPs ∝ n^{stats.fmt(r['by_n']['total_exponent'])}·"
                 f"d^{stats.fmt(r['by_d']['total_exponent'])}", sequential,
                 f"{r['depths']['sequential'][0]} .. {r['depths']['sequential'][-1]} for n = "
                 f"{ns[0]} .. {ns[-1]}; dataflow depth {_dataflow_cell(r['depths'])}", path,
                 _path_cell(r["path_length"])])
  headers = ["Layer type", "Complexity per layer (Vaswani)", "measured",
             "Sequential operations (Vaswani)", "measured (scan steps)",
             "Maximum path length (Vaswani)", "measured (fewest ops from t−k to t)"]
  text = [markdown.table(headers, rows), "",
          f"Measured exponents, fitted in each regime of the attention formula "
          f"8·n·d² + 4·n²·d (its terms are equal at n = 2d): of n over n = "
          f"{results['lengths'][0]} .. {results['lengths'][-1]} at d = {results['width']}, split "
          f"at n = {2 * results['width']}; of d over d = {results['widths'][0]} .. "
          f"{results['widths'][-1]} at n = {results['length']}, split at d = "
          f"{results['length'] // 2}. Source: `complexity/results.json`."]
  if parallelism:
    d = str(parallelism["widths"][0])  # per width since issue 10.2; the narrowest here
    times = ", ".join(
        f"{variants.variant(n).label} n^{stats.fmt(r[d]['exponents']['train_ms'])}"
        for n, r in parallelism["models"].items())
    text.append(f"Wall time of a training step on {parallelism['backend']} at d = {d} "
                f"(`parallelism/results.json`): {times}.")
  return "\n".join(text)
