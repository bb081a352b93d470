"""Probes of a restored run: the gradient path back to the source, and where attention looks.

    probes.gradient_profile(restored, 80)               # ‖∂loss_t/∂x_{t-k}‖ by lag k, per seed
    probes.attention_mass_by_distance(restored, [20])   # weight on the source, per head and seed

Legend: S seeds, B batch, T time, E embedding width, L layers, H heads.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqresearch import models
from seqresearch import tasks
from seqresearch.analysis import attention_mass
from seqresearch.analysis import gradient_path
from seqresearch.study.restore import Restored, probe_batch


def _log10(x: float) -> float:
  return math.log10(x) if x > 0 and math.isfinite(x) else float("nan")


def source_and_neutral_norms(norm_BxT: np.ndarray, positions_B: np.ndarray,
                             distance: int) -> tuple[float, float]:
  """(mean norm at the source, median norm over the intermediate lags 2 .. distance-1).

  The neutral normaliser leaves out lag 1, which in the copy task is the delimiter (it draws
  4-30x a blank's gradient in a Transformer), and the source itself; the median over the
  remaining lags is robust to the few symbol positions among them.

  Args:
    norm_BxT: ‖∂loss_b/∂x[b, s]‖ per example b and input position s.
    positions_B: each example's scored position t_b.
    distance: the dependency distance (the source sits at t_b - distance).

  Returns:
    (source, neutral); neutral is NaN when distance < 3 (no intermediate lag).
  """
  b_B = np.arange(len(positions_B))
  source = float(norm_BxT[b_B, positions_B - distance].mean())
  lags_K = np.arange(2, distance)
  if lags_K.size == 0:
    return source, float("nan")
  between_BxK = norm_BxT[b_B[:, None], positions_B[:, None] - lags_K[None, :]]
  return source, float(np.median(between_BxK))


def gradient_profile(restored: Restored, distance: int, *, num_examples: int = 32,
                     at_init: bool = False) -> dict[str, Any]:
  """‖∂loss_t/∂x_{t-k}‖ by lag k for every seed, where t is each example's first scored position.

  The dependency source lies at lag k = distance. Per seed: the norms by lag (mean over
  examples), the fitted per-step decay rate r (norm ≈ C·exp(r·k) over lags 1 .. distance),
  the absolute norm at the source, and the source's norm over the neutral level (the median
  over the intermediate lags 2 .. distance-1; see `source_and_neutral_norms`), as log10.

  Returns:
    {'distance', 'lags', 'norms_by_seed' [S][lags], 'decay_rate_by_seed' [S],
     'log10_source_norm_by_seed' [S], 'log10_source_over_neutral_by_seed' [S],
     'source_norm_by_seed' [S] (the norm itself: exactly 0 where no path reaches the source,
     e.g. beyond a convolution's or a local window's reach)}; a value that cannot be computed
    (a fit with fewer than two positive points, the log of 0) is NaN.
  """
  batch = probe_batch(restored, distance, num_examples)
  positions_B, targets_B, _ = gradient_path.scored_positions(batch, "first")
  num_lags = int(positions_B.min()) + 1  # every example reaches back this far
  lags_K = np.arange(num_lags)
  out: dict[str, list] = {"norms": [], "rates": [], "source": [], "ratio": [], "raw": []}
  for s in range(len(restored.seeds)):
    model = restored.initial_model(s) if at_init else restored.model(s)
    g_BxTxE = gradient_path.embedding_gradients(model, batch.inputs, jnp.asarray(positions_B),
                                                jnp.asarray(targets_B))
    norm_BxT = np.linalg.norm(np.asarray(g_BxTxE, np.float64), axis=-1)
    norm_K = np.take_along_axis(norm_BxT, positions_B[:, None] - lags_K[None, :], axis=1)
    norm_K = norm_K.mean(axis=0)
    fit_K = slice(1, distance + 1)
    try:
      rate = gradient_path.fit_decay_rate(lags_K[fit_K], norm_K[fit_K])
    except ValueError:  # fewer than two finite, positive points to fit
      rate = float("nan")
    source, neutral = source_and_neutral_norms(norm_BxT, positions_B, distance)
    out["norms"].append([float(v) for v in norm_K])
    out["rates"].append(float(rate))
    out["raw"].append(float(source))
    out["source"].append(_log10(source))
    out["ratio"].append(_log10(source / neutral) if neutral > 0 else float("nan"))
  return {"distance": int(distance), "lags": lags_K.tolist(), "norms_by_seed": out["norms"],
          "decay_rate_by_seed": out["rates"], "log10_source_norm_by_seed": out["source"],
          "log10_source_over_neutral_by_seed": out["ratio"], "source_norm_by_seed": out["raw"]}


def has_attention(restored: Restored) -> bool:
  """Whether the run's model can return attention weights (`return_attention=True`)."""
  lm = models.entry(restored.model_name).lm
  return "return_attention" in inspect.signature(lm.__call__).parameters


def attention_at_distance(restored: Restored, distance: int, *, num_examples: int = 32,
                          seed_index: int = 0) -> tuple[tasks.Batch, list[np.ndarray]]:
  """(batch, [w_BxHxTxT per layer]) of one seed's attention on a batch at `distance`.

  Raises:
    ValueError: the run's model has no attention weights.
  """
  if not has_attention(restored):
    raise ValueError(f"{restored.workdir} holds a {restored.model_name} model, which returns "
                     "no attention weights; attention maps need an attention model.")
  batch = probe_batch(restored, distance, num_examples)
  graphdef, state = nnx.split(restored.model(seed_index))
  weights = _attention_weights(graphdef, state, batch.inputs)
  return batch, [np.asarray(w) for w in weights]


@functools.partial(jax.jit, static_argnums=0)
def _attention_weights(graphdef, state, tokens_BxT):
  return nnx.merge(graphdef, state)(tokens_BxT, return_attention=True)[1]


def attention_mass_by_distance(restored: Restored, distances: list[int], *,
                               num_examples: int = 32) -> dict[str, Any]:
  """Mean attention weight on the true source, per seed, (layer, head) and distance.

  Returns:
    {'heads': {'L0H1': {distance: [mass of seed s]}}, 'uniform': {distance: mass of a uniform
     causal head}, 'seeds': [seed ids]} (distances as strings, for JSON).
  """
  heads: dict[str, dict[str, list[float]]] = {}
  uniform: dict[str, float] = {}
  for distance in distances:
    for s in range(len(restored.seeds)):
      batch, weights = attention_at_distance(restored, distance, num_examples=num_examples,
                                             seed_index=s)
      by_head = attention_mass.mass_on_source_by_layer(weights, batch.weights, batch.distance)
      for (layer, head), by_d in by_head.items():
        for d, m in by_d.items():
          heads.setdefault(f"L{layer}H{head}", {}).setdefault(str(d), []).append(m)
    uniform.update({str(d): m for d, m in
                    attention_mass.uniform_mass(
                        batch.weights, batch.distance,
                        window=getattr(restored.settings.model, "window", None)).items()})
  return {"heads": heads, "uniform": uniform, "seeds": list(restored.seeds)}
