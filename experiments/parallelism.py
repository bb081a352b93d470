"""Question 4: does the Transformer's O(1) sequential depth make it faster in wall time?

Runs: none (untrained models; timing does not depend on the weights).
Analysis: one layer of each model of the table (`variants.sized_settings`: width d) inside its
token LM, at each sequence length n: the median wall time of the
jitted forward pass and of forward + backward (the gradient of the mean cross-entropy) on this
backend, and the sequential depth (`analysis.flops.sequential_depth`: scan steps, 1 for
straight-line code) and the dataflow depth (longest chain of dependent primitives) of the
programs. Power-law fits of each against n.
Figure: wall time and depths against n. The same command measures a GPU/TPU when run there.
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
from seqresearch.analysis import fits
from seqresearch.analysis import flops
from seqresearch.analysis import gradient_path
from seqresearch.study import markdown, plots, runner, stats, variants, verdicts

TITLE = "Parallelism: wall time and sequential steps versus n"
CLAIM = ("A recurrent layer needs O(n) sequential operations, self-attention O(1), so "
         "attention parallelises across positions and trains faster on parallel hardware.")
SWEEPS = ()
TIMED = True  # the report runs this analysis alone, so nothing else competes for the cores
LINEAR, FLAT = 0.9, 0.1  # depth exponents that count as O(n) and as O(1)
VOCAB = 16


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


def run(study: runner.Study) -> dict[str, Any]:
  s = study.settings.parallelism
  lengths = list(s.lengths)
  device = jax.devices()[0]
  out: dict[str, Any] = {"backend": device.platform, "device": device.device_kind,
                         "lengths": lengths, "width": s.width, "batch_size": s.batch_size,
                         "repetitions": s.repetitions, "models": {},
                         "load_average_before": list(os.getloadavg())}
  for name in study.config.study_models(study.scale):
    rows = {"forward_ms": [], "train_ms": [], "train_ms_min": [], "train_ms_max": [],
            "train_flops": [], "train_gflops_per_s": [], "sequential_depth": [],
            "train_sequential_depth": [], "dataflow_depth": {}}
    for n in lengths:
      forward, train, params, tokens = _programs(name, s.width, n, s.batch_size)
      rows["forward_ms"].append(statistics.median(
          _timings_ms(jax.jit(forward), (params, tokens), s.repetitions)))
      train_ms = _timings_ms(jax.jit(train), (params, tokens), s.repetitions)
      rows["train_ms"].append(statistics.median(train_ms))
      rows["train_ms_min"].append(min(train_ms))
      rows["train_ms_max"].append(max(train_ms))
      # The FLOPs of the very program timed (its attention implementation included).
      count = flops.flop_count(train, params, tokens, strict=False).total
      rows["train_flops"].append(count)
      rows["train_gflops_per_s"].append(count / rows["train_ms"][-1] / 1e6)
      rows["sequential_depth"].append(flops.sequential_depth(forward, params, tokens))
      rows["train_sequential_depth"].append(flops.sequential_depth(train, params, tokens))
      if n <= s.max_dataflow_length:
        rows["dataflow_depth"][str(n)] = flops.dataflow_depth(forward, params, tokens)
    depth_ns = [int(n) for n in rows["dataflow_depth"]]
    rows["exponents"] = {
        "forward_ms": _exponent(lengths, rows["forward_ms"]),
        "train_ms": _exponent(lengths, rows["train_ms"]),
        "sequential_depth": _exponent(lengths, rows["sequential_depth"]),
        "dataflow_depth": _exponent(depth_ns, [rows["dataflow_depth"][str(n)] for n in depth_ns]),
    }
    out["models"][name] = rows
  out["load_average_after"] = list(os.getloadavg())
  return out


def figures(results: dict[str, Any], out_dir: str) -> list[str]:
  fig, (time_ax, depth_ax) = plots.figure(ncols=2, width=5.5)
  ns = results["lengths"]
  for name, rows in results["models"].items():
    color, label = variants.style(name)["color"], variants.variant(name).label
    time_ax.loglog(ns, rows["train_ms"], marker="o", color=color, label=label)
    time_ax.loglog(ns, rows["forward_ms"], marker=".", ls=":", color=color)
    depth_ax.loglog(ns, rows["sequential_depth"], marker="o", color=color,
                    label=f"{label}: sequential steps")
    depth_ns = sorted(rows["dataflow_depth"], key=int)
    depth_ax.loglog([int(n) for n in depth_ns], [rows["dataflow_depth"][n] for n in depth_ns],
                    marker="x", ls=":", color=color, label=f"{label}: dataflow depth")
  for ax in (time_ax, depth_ax):
    plots.integer_ticks(ax, ns)
  time_ax.set(xlabel="sequence length $n$", ylabel="ms (solid: fwd+bwd, dotted: fwd)",
              title=f"Wall time, {results['backend']}")
  depth_ax.set(xlabel="sequence length $n$", ylabel="steps", title="Depth of the forward program")
  time_ax.legend(fontsize=7)
  depth_ax.legend(fontsize=6)
  return [plots.save(fig, os.path.join(out_dir, "parallelism.png"))]


def tables(results: dict[str, Any]) -> str:
  ns = results["lengths"]
  rows = []
  for name, r in results["models"].items():
    e = r["exponents"]
    rows.append([variants.variant(name).label] +
                [f"{f:.2f} / {t:.2f} [{lo:.2f}, {hi:.2f}]; {g:.2f} GFLOP/s"
                 for f, t, lo, hi, g in zip(r["forward_ms"], r["train_ms"], r["train_ms_min"],
                                            r["train_ms_max"], r["train_gflops_per_s"])] +
                [f"{stats.fmt(e['forward_ms'])} / {stats.fmt(e['train_ms'])}",
                 f"{r['sequential_depth'][-1]} ({stats.fmt(e['sequential_depth'])})",
                 f"{stats.fmt(e['dataflow_depth'])}"])
  return (f"Median wall time in ms, forward / forward+backward [min, max of "
          f"{results['repetitions']} calls] and the forward+backward FLOP rate (FLOPs counted on "
          f"the timed program), batch {results['batch_size']}, "
          f"width {results['width']}, on {results['backend']} ({results['device']}); fitted "
          f"exponent of n; sequential steps of the forward program at n = {ns[-1]} (exponent); "
          f"exponent of its dataflow depth.\n\n" +
          markdown.table(["model"] + [f"n = {n}" for n in ns] +
                                ["time ∝ n^a (fwd / fwd+bwd)", "sequential steps",
                                 "dataflow depth ∝ n^a"], rows))


def verdict(results: dict[str, Any]) -> verdicts.Verdict:
  v = verdicts.Verdict(results)
  m = results["models"]
  ns = results["lengths"]
  last = len(ns) - 1
  label = lambda name: variants.variant(name).label  # noqa: E731
  recurrent = [n for n in m if variants.variant(n).is_recurrent]
  parallel = [n for n in m if n not in recurrent]
  v.say(f"On {results['backend']} ({results['device']}), over n = "
        f"{v.number('lengths.0', 'd')} .. {v.number(f'lengths.{last}', 'd')} the "
        f"forward+backward time grows as n^a with a = " +
        ", ".join(f"{v.number(f'models.{n}.exponents.train_ms')} ({label(n)})" for n in m) + ".")
  v.say("The compiled forward program has " +
        ", ".join(f"{v.number(f'models.{n}.sequential_depth.{last}', 'd')} ({label(n)})"
                  for n in m) + " sequential steps" +
        f" at n = {ns[-1]}, and its longest dependency chain grows as n^a with a = " +
        ", ".join(f"{v.number(f'models.{n}.exponents.dataflow_depth')} ({label(n)})"
                  for n in m) + f" (O(n): a >= {LINEAR}; O(1): a <= {FLAT}).")
  exponent = {n: m[n]["exponents"]["dataflow_depth"] for n in m}
  if any(a is None for a in exponent.values()):
    v.say("With a single length no depth exponent is fitted: undecided at this scale.")
  else:
    off = [n for n in recurrent if exponent[n] < LINEAR] + \
        [n for n in parallel if exponent[n] > FLAT]
    if off:
      v.contradicts("Against Table 1's O(n) (recurrent) and O(1) (self-attention) sequential "
                    "operations, the depth of " + ", ".join(f"the {label(n)}" for n in off) +
                    " grows otherwise.")
    else:
      v.say("That is Table 1's O(n) against O(1) sequential operations.")
  if not parallel or not recurrent:
    return v
  fastest_par = min(parallel, key=lambda n: m[n]["train_ms"][last])
  fastest_rec = min(recurrent, key=lambda n: m[n]["train_ms"][last])
  par_ms = f"models.{fastest_par}.train_ms.{last}"
  rec_ms = f"models.{fastest_rec}.train_ms.{last}"
  par_f, rec_f = (f"models.{x}.train_flops.{last}" for x in (fastest_par, fastest_rec))
  par_g, rec_g = (f"models.{x}.train_gflops_per_s.{last}" for x in (fastest_par, fastest_rec))
  v.say(f"At n = {ns[-1]} one training step of the {label(fastest_par)} counts "
        f"{v.number(par_f, '.3g')} FLOPs and runs at {v.number(par_g, '.2f')} GFLOP/s; the "
        f"{label(fastest_rec)}'s counts {v.number(rec_f, '.3g')} at {v.number(rec_g, '.2f')} "
        f"GFLOP/s (load average {v.number('load_average_before.0', '.1f')} before the timings, "
        f"{v.number('load_average_after.0', '.1f')} after).")
  if m[fastest_par]["train_gflops_per_s"][last] >= m[fastest_rec]["train_gflops_per_s"][last]:
    v.say(f"The {label(fastest_par)} achieves at least the FLOP rate of the "
          f"{label(fastest_rec)}: where it is slower it does more work, not less parallel work.")
  else:
    v.say(f"The {label(fastest_par)} achieves a lower FLOP rate than the {label(fastest_rec)}: "
          f"on this backend its O(1) sequential depth does not turn into better use of the "
          f"hardware.")
  if m[fastest_par]["train_ms"][last] > m[fastest_rec]["train_ms"][last]:
    v.contradicts(f"On this {results['backend']} backend the O(1) sequential depth did not "
                  f"buy speed: at n = {ns[-1]} a {label(fastest_par)} training step takes "
                  f"{v.number(par_ms, '.1f')} ms against {v.number(rec_ms, '.1f')} ms for the "
                  f"{label(fastest_rec)} (median of the timed calls); the essay's speed "
                  f"argument needs hardware that runs the n positions in parallel.")
  else:
    v.say(f"At n = {ns[-1]} a {label(fastest_par)} training step takes "
          f"{v.number(par_ms, '.1f')} ms against {v.number(rec_ms, '.1f')} ms for the fastest "
          f"recurrent model ({label(fastest_rec)}), as the essay predicts.")
  return v
