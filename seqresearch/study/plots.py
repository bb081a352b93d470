"""Figures of the study: one canvas helper, integer ticks, one colour per model.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state, no display), so they
are safe in worker processes and tests. Every line of a variant takes `variants.style(name)`:
its model's colour from the table, a dash per variant of the same model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from seqresearch.study import variants

DPI = 90  # figures of many panels stay small enough to publish (reports/, < 1 MB in all)


def figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6):
  """(fig, [axes]) of ncols x nrows panels of width x height inches each."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # only figures need matplotlib
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width * ncols, height * nrows))
  FigureCanvasAgg(fig)
  return fig, [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]


def save(fig: Any, path: str) -> str:
  """Lays out and writes `fig` as a PNG at `path` (directories created); returns path."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=DPI)
  return path


def integer_ticks(ax: Any, xs: Sequence[int] | None = None, axis: str = "x") -> None:
  """Integer tick labels: at exactly `xs` when given (log axes too), else integer locations."""
  from matplotlib.ticker import MaxNLocator
  target = ax.xaxis if axis == "x" else ax.yaxis
  if xs is not None:
    target.set_ticks([int(x) for x in xs], [str(int(x)) for x in xs])
    target.set_minor_locator(MaxNLocator(nbins=1, integer=True))
    target.set_tick_params(which="minor", length=0)
    target.set_minor_formatter("")
  else:
    target.set_major_locator(MaxNLocator(integer=True))


def errorbar(ax: Any, name: str, xs: Sequence[float], summaries: Sequence[dict[str, Any]],
             points: bool = True, learnt: float | None = None, **style: Any) -> None:
  """Mean ± 95% interval over seeds of variant `name`, and each seed as a small point.

  Seeds are drawn where they are finite, so bimodal outcomes show as two clusters. With
  `learnt` (the accuracy from which a seed counts as having learnt the task), a cell whose
  seeds fall on both sides of it (`stats.split`) gets no interval (it would span both modes
  and describe no seed) and no mean marker: its seeds are drawn as large points, and the line
  through the means passes it unmarked. `style` overrides line properties of
  `variants.style(name)` (e.g. a marker and label per model size); the colour stays the
  model's.
  """
  from seqresearch.study import stats  # pylint: disable=g-import-not-at-top
  s = {**variants.style(name), **style}
  nan = float("nan")
  split = [stats.split(x, learnt) for x in summaries]
  mean = [x["mean"] if x["mean"] is not None else nan for x in summaries]
  err = [x["ci95"] if x["ci95"] is not None else 0.0 for x in summaries]
  if not any(split):
    ax.errorbar(xs, mean, yerr=err, capsize=3, **s)
  else:
    line = {k: v for k, v in s.items() if k not in ("marker",)}
    ax.plot(xs, mean, **line)  # the means, unmarked where the seeds split
    kept = [i for i, bad in enumerate(split) if not bad]
    ax.errorbar([xs[i] for i in kept], [mean[i] for i in kept], yerr=[err[i] for i in kept],
                capsize=3, **{**s, "ls": "none", "label": None})
  if points:
    for x, summary, bimodal in zip(xs, summaries, split):
      seeds = [v for v in summary["per_seed"] if v is not None]
      ax.plot([x] * len(seeds), seeds, ls="none", marker="o" if bimodal else ".",
              color=s["color"], alpha=0.8 if bimodal else 0.5,
              markersize=6 if bimodal else 4)
