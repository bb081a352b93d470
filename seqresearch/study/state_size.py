"""How much a model holds between tokens: its state size in floats (Zoology's x axis).

Arora et al. (2023, "Zoology", Fig. 2 and §4) plot recall accuracy against the memory a model
keeps while it reads: for a recurrence its fixed-size state, for attention its key-value cache,
which grows with the sequence. `state_floats` counts that memory for any model of the table:

  carried state (`settings.is_recurrent`: the model evaluates token by token with a carry):
    the floats of `initial_state(1)`, one example's carry over all layers, a complex entry
    counted as two floats. From the settings, this is per layer
      Elman RNN, GRU, minGRU, minLSTM  H                (hidden_size)
      LSTM                              2H               (cell and hidden state)
      LRU                               2N               (N complex channels)
      Mamba (S6)                        E·N + (k - 1)·E  (state, and the conv inputs kept)
      causal CNN                        (k - 1)·dilation·D (the inputs its taps still need)
  attention (no carry): the key-value cache at sequence length T, 2·L·D·min(T, window):
    a key and a value of width D per layer for every position a query can still see.

Reading the count off the carry (instead of a formula per model) means a model added to the
table is counted with nothing edited here; tests/test_experiments.py checks the count of each
family against the formulas above.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np
from flax import nnx

from seqresearch import build
from seqresearch import models


def _floats(leaf: Any) -> int:
  """Floats in one array: complex entries count twice (real and imaginary part)."""
  size = math.prod(leaf.shape)
  return 2 * size if np.issubdtype(leaf.dtype, np.complexfloating) else size


def state_floats(settings: Any, seq_len: int) -> int:
  """Floats a model holds between tokens, for one example, at sequence length `seq_len`.

  Args:
    settings: model settings from `models.model_settings(name, ...)`.
    seq_len: T, the sequence length (the attention cache grows with it; a carry does not).

  Returns:
    The carry's size for a model with a carry (`settings.is_recurrent`), else the key-value
    cache 2·num_layers·d_model·min(T, attention window) (see the module docstring).

  Raises:
    ValueError: seq_len is not an integer >= 1.
  """
  if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
    raise ValueError(f"seq_len={seq_len!r}: must be an integer >= 1.")
  if not settings.is_recurrent:
    window = settings.attention_window or seq_len
    return 2 * settings.num_layers * settings.d_model * min(seq_len, window)
  # Built abstractly (shapes only, no parameters are drawn); the carry is all zeros, so its
  # shapes do not depend on the parameters.
  lm = nnx.eval_shape(lambda: models.build_model(settings, vocab_size=2, rngs=nnx.Rngs(0)))
  carry = jax.eval_shape(lambda: lm.initial_state(1))
  return int(sum(_floats(leaf) for leaf in jax.tree.leaves(carry)))


# Integer settings that are not sizes of the model (lengths of position tables, unrolling).
NOT_SIZES = ("num_layers", "max_len", "chrono_max_len", "unroll")


def describe(config: Any, num_params: int) -> dict[str, Any]:
  """What a trained run compared: its model's size, state, learning rate and budget.

  Args:
    config: the run's config (`workdir.load_config`), a ConfigDict.
    num_params: the parameters of one seed's model (summary.json `num_params`).

  Returns:
    {"parameters", "num_layers", "sizes" (the model's integer settings that size it, e.g.
    hidden_size, d_model, state_size, kernel_size, by name; defaults included), "state_floats"
    (as `state_floats`, at the task's sequence length), "seq_len", "learning_rate", "steps",
    "batch_size"}.

  Raises:
    ValueError: the config is not a valid run config (as `build.validate_run`).
  """
  model = build.validate_run(config, warn=False).model
  task = build.task_settings(config.task)
  sizes = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
           if f.name not in NOT_SIZES and type(getattr(model, f.name)) is int}
  return {"parameters": int(num_params), "num_layers": int(model.num_layers),
          "sizes": dict(sorted(sizes.items())),
          "state_floats": state_floats(model, task.seq_len),
          "seq_len": task.seq_len, "learning_rate": float(config.optimizer.learning_rate),
          "steps": int(config.num_train_steps), "batch_size": int(config.batch_size)}
