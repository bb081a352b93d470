"""Question 4: does the Transformer's O(1) sequential depth make it faster in wall time?

Runs: none (untrained models; timing does not depend on the weights).
Analysis: one layer of each model (Elman RNN, LSTM, GRU at hidden size d; a Transformer block
at d_model d) inside its token LM, at each sequence length n: the median wall time of the
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
from seqresearch import report
from seqresearch.analysis import fits
from seqresearch.analysis import flops
from seqresearch.analysis import gradient_path

TITLE = "Parallelism: wall time and sequential steps versus n"
CLAIM = ("A recurrent layer needs O(n) sequential operations, self-attention O(1), so "
         "attention parallelises across positions and trains faster on parallel hardware.")
SWEEPS = ()
TIMED = True  # the report runs this analysis alone, so nothing else competes for the cores
MODELS = ("rnn", "lstm", "gru", "transformer")
LINEAR, FLAT = 0.9, 0.1  # depth exponents that count as O(n) and as O(1)
VOCAB = 16


def _settings(name: str, width: int, max_len: int):
  if name == "transformer":
    return models.model_settings(name, d_model=width, num_heads=max(1, width // 16),
                                 mlp_dim=2 * width, num_layers=1, max_len=max_len)
  return models.model_settings(name, embed_dim=width, hidden_size=width)


def _programs(name: str, width: int, length: int, batch: int):
  """(forward, forward+backward, params, tokens) of one model at sequence length `length`."""
  model = models.build_model(_settings(name, width, length), vocab_size=VOCAB,
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


def _median_seconds(fn, args, repetitions: int) -> float:
  jax.block_until_ready(fn(*args))  # compile and warm up
  times = []
  for _ in range(repetitions):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _exponent(xs, ys) -> float:
  return fits.fit_power_law(xs, ys)[0] if len(set(xs)) > 1 else float("nan")


def run(study: report.Study) -> dict[str, Any]:
  s = study.settings.parallelism
  lengths = list(s.lengths)
  device = jax.devices()[0]
  out: dict[str, Any] = {"backend": device.platform, "device": device.device_kind,
                         "lengths": lengths, "width": s.width, "batch_size": s.batch_size,
                         "repetitions": s.repetitions, "models": {}}
  for name in s.models:
    rows = {"forward_ms": [], "train_ms": [], "sequential_depth": [], "train_sequential_depth": [],
            "dataflow_depth": {}}
    for n in lengths:
      forward, train, params, tokens = _programs(name, s.width, n, s.batch_size)
      rows["forward_ms"].append(1e3 * _median_seconds(jax.jit(forward), (params, tokens),
                                                      s.repetitions))
      rows["train_ms"].append(1e3 * _median_seconds(jax.jit(train), (params, tokens),
                                                    s.repetitions))
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
  return out


def figures(results: dict[str, Any], out_dir: str) -> list[str]:
  fig, (time_ax, depth_ax) = report.figure(ncols=2, width=5.5)
  ns = results["lengths"]
  for name, rows in results["models"].items():
    line, = time_ax.loglog(ns, rows["train_ms"], marker="o", label=f"{report.label(name)}")
    time_ax.loglog(ns, rows["forward_ms"], marker=".", ls=":", color=line.get_color())
    depth_ax.loglog(ns, rows["sequential_depth"], marker="o", color=line.get_color(),
                    label=f"{report.label(name)}: sequential steps")
    depth_ns = sorted(rows["dataflow_depth"], key=int)
    depth_ax.loglog([int(n) for n in depth_ns], [rows["dataflow_depth"][n] for n in depth_ns],
                    marker="x", ls=":", color=line.get_color(),
                    label=f"{report.label(name)}: dataflow depth")
  time_ax.set(xlabel="sequence length n", ylabel="ms (solid: fwd+bwd, dotted: fwd)",
              title=f"Wall time on {results['backend']} ({results['device']})")
  depth_ax.set(xlabel="sequence length n", ylabel="steps", title="Depth of the forward program")
  time_ax.legend(fontsize=7)
  depth_ax.legend(fontsize=6)
  return [report.save(fig, os.path.join(out_dir, "parallelism.png"))]


def tables(results: dict[str, Any]) -> str:
  ns = results["lengths"]
  rows = []
  for name, r in results["models"].items():
    e = r["exponents"]
    rows.append([report.label(name)] +
                [f"{f:.2f} / {t:.2f}" for f, t in zip(r["forward_ms"], r["train_ms"])] +
                [f"{report.fmt(e['forward_ms'])} / {report.fmt(e['train_ms'])}",
                 f"{r['sequential_depth'][-1]} ({report.fmt(e['sequential_depth'])})",
                 f"{report.fmt(e['dataflow_depth'])}"])
  return (f"Median wall time in ms, forward / forward+backward, batch {results['batch_size']}, "
          f"width {results['width']}, on {results['backend']} ({results['device']}); fitted "
          f"exponent of n; sequential steps of the forward program at n = {ns[-1]} (exponent); "
          f"exponent of its dataflow depth.\n\n" +
          report.markdown_table(["model"] + [f"n = {n}" for n in ns] +
                                ["time ∝ n^a (fwd / fwd+bwd)", "sequential steps",
                                 "dataflow depth ∝ n^a"], rows))


def verdict(results: dict[str, Any]) -> report.Verdict:
  v = report.Verdict(results)
  m = results["models"]
  ns = results["lengths"]
  last = len(ns) - 1
  recurrent = [n for n in m if n != "transformer"]
  v.say(f"On {results['backend']} ({results['device']}), over n = "
        f"{v.number('lengths.0', 'd')} .. {v.number(f'lengths.{last}', 'd')} the "
        f"forward+backward time grows as n^a with a = " +
        ", ".join(f"{v.number(f'models.{n}.exponents.train_ms')} ({report.label(n)})"
                  for n in m) + ".")
  v.say("The compiled forward program has " +
        ", ".join(f"{v.number(f'models.{n}.sequential_depth.{last}', 'd')} ({report.label(n)})"
                  for n in m) + " sequential steps" +
        f" at n = {ns[-1]}, and its longest dependency chain grows as n^a with a = " +
        ", ".join(f"{v.number(f'models.{n}.exponents.dataflow_depth')} ({report.label(n)})"
                  for n in m) + ".")
  linear = all(m[n]["exponents"]["dataflow_depth"] >= LINEAR for n in recurrent)
  flat = "transformer" not in m or m["transformer"]["exponents"]["dataflow_depth"] <= FLAT
  if linear and flat:
    v.say("That is Table 1's O(n) against O(1) sequential operations.")
  else:
    v.contradicts("The depths do not follow Table 1's O(n) (recurrent) against O(1) "
                  "(attention) sequential operations.")
  if "transformer" not in m or not recurrent:
    return v
  tf = m["transformer"]["train_ms"][last]
  fastest = min(recurrent, key=lambda n: m[n]["train_ms"][last])
  if tf > m[fastest]["train_ms"][last]:
    v.contradicts(f"On this {results['backend']} backend the O(1) sequential depth did not "
                  f"buy speed: at n = {ns[-1]} a Transformer training step takes "
                  f"{v.number(f'models.transformer.train_ms.{last}', '.1f')} ms against "
                  f"{v.number(f'models.{fastest}.train_ms.{last}', '.1f')} ms for the "
                  f"{report.label(fastest)}; the essay's speed argument needs hardware that "
                  f"runs the n positions in parallel.")
  else:
    v.say(f"At n = {ns[-1]} a Transformer training step takes "
          f"{v.number(f'models.transformer.train_ms.{last}', '.1f')} ms against "
          f"{v.number(f'models.{fastest}.train_ms.{last}', '.1f')} ms for the fastest "
          f"recurrent model ({report.label(fastest)}), as the essay predicts.")
  return v
