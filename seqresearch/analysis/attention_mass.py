"""Where attention looks: the weight each scored query puts on its true dependency source.

Legend: B batch, L layers, H heads, T query positions, S key positions (T = S for
self-attention), Q queries per example.

A task Batch marks the scored positions (`weights > 0`) and the dependency distance at each
(`distance`); the source of the query at t is the key at t - distance (copy: the recalled
symbol; agreement: the subject). Weights come from `TransformerLM(tokens,
return_attention=True)`, one w_BxHxTxT per layer. All functions run on the host (numpy).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np

Array = np.ndarray | jax.Array


def mass_at(w_BxHxTxS: Array, query_BxQ: Array, source_BxQ: Array) -> np.ndarray:
  """mass_BxHxQ = w[b, h, query[b, q], source[b, q]]: the weight of given (query, key) pairs."""
  w = np.asarray(w_BxHxTxS)
  q_BxQ, s_BxQ = np.asarray(query_BxQ, np.int64), np.asarray(source_BxQ, np.int64)
  b_Bx1 = np.arange(w.shape[0])[:, None]
  # Advanced indices on axes 0, 2, 3 broadcast to BxQ and go first: mass_BxQxH.
  return np.moveaxis(w[b_Bx1, :, q_BxQ, s_BxQ], -1, 1)


def _scored_pairs(scored_BxT: Array, distance_BxT: Array) -> tuple[np.ndarray, ...]:
  """(b, t, source, distance) of every scored position, flattened; checks source >= 0."""
  b_N, t_N = np.nonzero(np.asarray(scored_BxT) > 0)
  d_N = np.asarray(distance_BxT, np.int64)[b_N, t_N]
  src_N = t_N - d_N
  if np.any(src_N < 0) or np.any(d_N < 0):
    bad = int(np.argmax((src_N < 0) | (d_N < 0)))
    raise ValueError(f"scored position t={t_N[bad]} of example {b_N[bad]} has distance "
                     f"{d_N[bad]}: its source t - distance must lie in [0, t].")
  return b_N, t_N, src_N, d_N


def mass_on_source(w_BxHxTxT: Array, scored_BxT: Array,
                   distance_BxT: Array) -> dict[int, np.ndarray]:
  """{distance: mass_H}, the mean weight from scored queries to their source, per head.

  Args:
    w_BxHxTxT: one layer's attention weights (rows sum to 1).
    scored_BxT: > 0 at the scored positions (a Batch's `weights`).
    distance_BxT: dependency distance at each scored position (a Batch's `distance`).

  Returns:
    For each distance present, the mean over its scored positions of w[b, h, t, t - d], per
    head h (float64 array of length H).
  """
  w = np.asarray(w_BxHxTxT, np.float64)
  b_N, t_N, src_N, d_N = _scored_pairs(scored_BxT, distance_BxT)
  mass_NxH = w[b_N, :, t_N, src_N]
  return {int(d): mass_NxH[d_N == d].mean(axis=0) for d in np.unique(d_N)}


def mass_on_source_by_layer(weights: Sequence[Array], scored_BxT: Array,
                            distance_BxT: Array) -> dict[tuple[int, int], dict[int, float]]:
  """{(layer, head): {distance: mean mass on the source}} for every layer's w_BxHxTxT."""
  result: dict[tuple[int, int], dict[int, float]] = {}
  for layer, w_BxHxTxT in enumerate(weights):
    by_distance = mass_on_source(w_BxHxTxT, scored_BxT, distance_BxT)
    for head in range(np.shape(w_BxHxTxT)[1]):
      result[(layer, head)] = {d: float(m_H[head]) for d, m_H in by_distance.items()}
  return result


def uniform_mass(scored_BxT: Array, distance_BxT: Array,
                 window: int | None = None) -> dict[int, float]:
  """{distance: mean mass on the source of a causal head attending uniformly}.

  The chance level to read `mass_on_source` against: a head that ignores content. Over all
  t+1 keys it is 1/(t+1); with a local window of r keys (the query itself included) it is
  1/min(t+1, r), and 0 for a source at distance >= r, which such a head cannot reach.

  Args:
    scored_BxT, distance_BxT: the batch's weights and distances.
    window: r of local attention, or None for full causal attention.
  """
  _, t_N, _, d_N = _scored_pairs(scored_BxT, distance_BxT)
  keys_N = t_N + 1 if window is None else np.minimum(t_N + 1, window)
  reach_N = np.ones_like(d_N, dtype=bool) if window is None else d_N < window
  mass_N = np.where(reach_N, 1.0 / keys_N, 0.0)
  return {int(d): float(mass_N[d_N == d].mean()) for d in np.unique(d_N)}


def future_mass(w_BxHxTxT: Array) -> float:
  """The largest total weight any query puts on keys after it: 0 for a causal layer."""
  w = np.asarray(w_BxHxTxT, np.float64)
  above_TxT = np.triu(np.ones(w.shape[-2:], dtype=bool), k=1)
  return float(np.where(above_TxT, w, 0.0).sum(axis=-1).max())


def plot_attention(w_TxT: Array, tokens: Sequence[int] | Array, path: str,
                   title: str | None = None) -> str:
  """Saves a heatmap of one head's weights (queries down, keys across) to `path`.

  Uses matplotlib's Agg canvas directly (no pyplot, no display, no global backend change).
  Token ids label the axes when T <= 64.

  Returns:
    path.
  """
  # Imported here so the rest of the analysis package does not need matplotlib.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  w = np.asarray(w_TxT, np.float64)
  toks = [int(t) for t in np.asarray(tokens).ravel()]
  if w.ndim != 2 or w.shape[0] != w.shape[1] or len(toks) != w.shape[0]:
    raise ValueError(f"w_TxT has shape {w.shape} and tokens {len(toks)} entries; expected "
                     f"a square TxT matrix and T tokens.")
  size = min(12.0, 3.0 + 0.15 * w.shape[0])
  fig = Figure(figsize=(size + 1.0, size))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  image = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=max(float(w.max()), 1e-12),
                    interpolation="nearest")
  fig.colorbar(image, ax=ax, label="attention weight")
  ax.set_xlabel("key position (token)")
  ax.set_ylabel("query position (token)")
  if w.shape[0] <= 64:
    labels = [f"{i}:{t}" for i, t in enumerate(toks)]
    ax.set_xticks(range(len(toks)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(toks)), labels, fontsize=6)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  fig.savefig(path, dpi=120)
  return path
