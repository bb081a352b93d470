"""What the benchmark measures: `BenchSettings`, validated before anything compiles."""

from __future__ import annotations

import dataclasses
from typing import Any

from seqresearch import host_memory
from seqresearch import models


def _check_int(name: str, value: Any, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}.")


@dataclasses.dataclass(frozen=True)
class BenchSettings:
  """What to measure.

  Attributes:
    models: names from `seqresearch.models.MODELS` (default: all of them, in table order).
    batch_size: B. width: D (the recurrent state width, the Transformer's d_model; the
      field of a model's settings that holds its width is set by `baselines.size_fields`).
    lengths: sequence lengths n to time.
    embed_dim: E of the models that have an embedding width apart from D.
    num_heads, mlp_dim: attention layer shape.
    vocab_size: V of the token LM around each body.
    repetitions: timed repetitions per measurement (after a warm-up one); medians reported.
    min_rep_seconds: each repetition runs enough steps to last about this long.
    variants: also time "ours" with each fast path forced to its reference form.
    torch: include PyTorch (if importable); torch_threads: its intra-op threads.
    compile_lengths: lengths at which the recurrent models' train-step compile time is taken
      (empty: not measured).
    runner_steps: steps of the full training run for the runner overhead (0 skips it).
    host_allocator: seqresearch.host_memory mode for the whole process (every implementation,
      PyTorch included, runs under it); 'auto' is the runner's default.
    bfloat16: also time "ours" with compute_dtype='bfloat16', for the models whose settings
      have that field (mixed precision); the others have no such row.
    scan_forms: also time each form of a shared field (`baselines.FIELD_FORMS`: sequential
      against associative scan) for the models that have it (always on with `variants`).
    seeds: K > 0 also times K vmapped seeds against K sequential runs of the runner config.
    device_counts: also times the runner config's steps/s on each of these device counts.
  """

  models: tuple[str, ...] = models.MODEL_NAMES
  batch_size: int = 64
  width: int = 256
  lengths: tuple[int, ...] = (64, 256, 1024)
  embed_dim: int = 64
  num_heads: int = 4
  mlp_dim: int = 1024
  vocab_size: int = 16
  repetitions: int = 5
  min_rep_seconds: float = 0.3
  variants: bool = True
  torch: bool = True
  torch_threads: int = 2
  compile_lengths: tuple[int, ...] = (64, 4096)
  runner_steps: int = 400
  host_allocator: str = "auto"
  bfloat16: bool = False
  scan_forms: bool = False
  seeds: int = 0
  device_counts: tuple[int, ...] = ()

  def __post_init__(self) -> None:
    host_memory.check(self.host_allocator)
    unknown = sorted(set(self.models) - set(models.MODEL_NAMES))
    if unknown or not self.models:
      raise ValueError(f"models={list(self.models)}: unknown {unknown or 'empty list'}; "
                       f"allowed: {list(models.MODEL_NAMES)}.")
    if isinstance(self.repetitions, bool) or not isinstance(self.repetitions, int) \
        or self.repetitions < 5:
      raise ValueError(f"repetitions={self.repetitions!r}: must be an integer >= 5 "
                       "(medians of >= 5).")
    for name in ("batch_size", "width", "embed_dim", "num_heads", "mlp_dim", "vocab_size",
                 "torch_threads"):
      _check_int(name, getattr(self, name), 1)
    for name in ("runner_steps", "seeds"):
      _check_int(name, getattr(self, name), 0)
    for name in ("lengths", "compile_lengths", "device_counts"):
      for value in getattr(self, name):
        _check_int(name, value, 1)
    if not self.lengths:
      raise ValueError("lengths=(): give at least one sequence length.")
    if self.width % self.num_heads:
      raise ValueError(f"num_heads={self.num_heads}: must divide width={self.width}.")
    if not self.min_rep_seconds >= 0:
      raise ValueError(f"min_rep_seconds={self.min_rep_seconds!r}: must be a number >= 0.")


# `scripts/bench.py --quick`: n = 64 only, no variants, a short runner run.
QUICK: dict[str, Any] = dict(lengths=(64,), variants=False, compile_lengths=(64, 1024),
                             runner_steps=200, min_rep_seconds=0.2)
