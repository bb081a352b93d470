"""Progress display: a tqdm bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

import tqdm


def note(message: str) -> None:
  """A line for the person running the job (stderr, unbuffered, whatever the log verbosity)."""
  print(message, file=sys.stderr, flush=True)


def _fmt(metrics: dict[str, Any]) -> str:
  return " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))


class Progress:
  """Counts dispatched steps; shows metrics whenever the loop reports them."""

  def __init__(self, total: int, start: int, enabled: bool = True, quiet: bool = False) -> None:
    """enabled: show a bar on a terminal (else log lines); quiet: show nothing at all."""
    self._total, self._start, self._t0 = total, start, time.time()
    self._quiet = quiet
    self._bar = None
    if enabled and not quiet and sys.stderr.isatty():
      self._bar = tqdm.tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

  def advance(self) -> None:
    if self._bar is not None:
      self._bar.update(1)

  def report(self, step: int, metrics: dict[str, Any], split: str = "train") -> None:
    if self._quiet:
      return
    keys = ("loss", "accuracy") if split == "train" else ("loss", "accuracy",
                                                          "sequence_accuracy")
    shown = {k: metrics[k] for k in keys if k in metrics}
    if self._bar is not None:
      self._bar.set_postfix({f"{split[0]}_{k}": f"{v:.4f}" for k, v in shown.items()})
      if split == "eval":
        self._bar.write(f"step {step} eval: {_fmt(shown)}")
      return
    done = step - self._start
    elapsed = time.time() - self._t0
    rate = done / elapsed if elapsed > 0 else float("nan")
    eta = (self._total - step) / rate if rate > 0 else float("nan")
    note(f"step {step}/{self._total} {split}: {_fmt(shown)} | {rate:.2f} steps/s, "
         f"ETA {eta:.0f}s")

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
