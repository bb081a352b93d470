"""How strongly the loss at a scored position reaches back to earlier inputs:
∂loss_t / ∂x_{t-k}.

Legend: B batch, T time, E embedding width, V vocabulary, K number of lags (k = 0 .. K-1).

Table 1's "maximum path length" predicts that this gradient decays with k through a recurrence
(a product of k Jacobians) and does not have to through attention (one hop). We measure it on
the token EMBEDDINGS x = model.embed(tokens): every model splits as
model(tokens) == model.from_embeddings(model.embed(tokens)), so differentiating
from_embeddings w.r.t. x gives the gradient w.r.t. every input position in ONE backward pass.

One loss position per example: example b is scored at position t_b only (its loss is
loss_fn(logits[b, t_b], target_b)). The batch's losses are summed before differentiating;
since no model mixes examples, example b's gradient is exactly that of its own loss.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqresearch.analysis.fits import fit_exponential
from seqresearch.tasks.base import Batch

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def cross_entropy(logits_BxV: jax.Array, targets_B: jax.Array) -> jax.Array:
  """loss_B: -log softmax(logits)[target], the training loss at one position."""
  logp_BxV = jax.nn.log_softmax(logits_BxV.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(logp_BxV, targets_B[:, None], axis=-1)[:, 0]


@functools.partial(jax.jit, static_argnums=(0, 5))
def _embedding_gradients(graphdef: nnx.GraphDef, state: nnx.State, tokens_BxT: jax.Array,
                         positions_B: jax.Array, targets_B: jax.Array,
                         loss_fn: LossFn) -> jax.Array:
  model = nnx.merge(graphdef, state)
  x_BxTxE = model.embed(tokens_BxT)

  def total_loss(x_BxTxE: jax.Array) -> jax.Array:
    logits_BxTxV = model.from_embeddings(x_BxTxE)
    logits_BxV = jnp.take_along_axis(logits_BxTxV, positions_B[:, None, None], axis=1)[:, 0]
    return jnp.sum(loss_fn(logits_BxV, targets_B))

  return jax.grad(total_loss)(x_BxTxE)


def embedding_gradients(model: nnx.Module, tokens_BxT: jax.Array, positions_B: jax.Array,
                        targets_B: jax.Array, loss_fn: LossFn = cross_entropy) -> jax.Array:
  """g_BxTxE = ∂ loss_b(t_b) / ∂ x[b, s] for every example b and input position s.

  Args:
    model: any module with `embed(tokens_BxT) -> x_BxTxE` and `from_embeddings(x) -> logits`.
    tokens_BxT: int32 inputs.
    positions_B: int32 scored position t_b of each example.
    targets_B: int32 target at t_b (what `loss_fn` compares the logits with).
    loss_fn: loss_fn(logits_BxV, targets_B) -> loss_B; the default is cross-entropy.

  Returns:
    g_BxTxE float32; zero at s > t_b for a causal model.
  """
  positions_B = jnp.asarray(positions_B, jnp.int32)
  t = tokens_BxT.shape[1]
  if positions_B.shape != (tokens_BxT.shape[0],):
    raise ValueError(f"positions_B has shape {positions_B.shape}; expected "
                     f"({tokens_BxT.shape[0]},), one scored position per example.")
  if int(jnp.min(positions_B)) < 0 or int(jnp.max(positions_B)) >= t:
    raise ValueError(f"positions_B must lie in [0, {t - 1}], got {np.asarray(positions_B)}.")
  graphdef, state = nnx.split(model)
  return _embedding_gradients(graphdef, state, tokens_BxT, positions_B,
                              jnp.asarray(targets_B, jnp.int32), loss_fn)


def gradient_norm_by_distance(model: nnx.Module, tokens_BxT: jax.Array, positions_B: jax.Array,
                              targets_B: jax.Array, *, num_lags: int | None = None,
                              loss_fn: LossFn = cross_entropy) -> np.ndarray:
  """norms_K[k] = mean over examples of || ∂loss_b(t_b) / ∂x[b, t_b - k] ||₂.

  Args:
    model, tokens_BxT, positions_B, targets_B, loss_fn: as in `embedding_gradients`.
    num_lags: K; defaults to max(t_b) + 1, every lag some example reaches.

  Returns:
    norms_K float64. Lag k averages only the examples with t_b - k >= 0; it is NaN where no
    example reaches that far back.
  """
  g_BxTxE = embedding_gradients(model, tokens_BxT, positions_B, targets_B, loss_fn)
  norm_BxT = np.linalg.norm(np.asarray(g_BxTxE, np.float64), axis=-1)
  pos_B = np.asarray(positions_B, np.int64)
  k_K = np.arange(int(pos_B.max()) + 1 if num_lags is None else num_lags)
  src_BxK = pos_B[:, None] - k_K[None, :]
  valid_BxK = src_BxK >= 0
  picked_BxK = np.take_along_axis(norm_BxT, np.clip(src_BxK, 0, None), axis=1)
  count_K = valid_BxK.sum(axis=0)
  total_K = np.where(valid_BxK, picked_BxK, 0.0).sum(axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count_K > 0, total_K / count_K, np.nan)


def scored_positions(batch: Batch, which: str = "first") -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
  """One scored position per example of a task batch, with its target and distance.

  Args:
    batch: a task Batch (weights mark the scored positions, distance their dependency).
    which: 'first' or 'last' scored position (copy scores L positions, all at the same
      distance T + L; agreement scores one).

  Returns:
    (positions_B, targets_B, distance_B) int64 numpy arrays.
  """
  scored_BxT = np.asarray(batch.weights) > 0
  if not scored_BxT.any(axis=1).all():
    raise ValueError("every example needs at least one scored position (batch.weights > 0).")
  if which == "first":
    pos_B = scored_BxT.argmax(axis=1)
  elif which == "last":
    pos_B = scored_BxT.shape[1] - 1 - scored_BxT[:, ::-1].argmax(axis=1)
  else:
    raise ValueError(f"which={which!r}: must be 'first' or 'last'.")
  pick = lambda a: np.take_along_axis(np.asarray(a), pos_B[:, None], axis=1)[:, 0]  # noqa: E731
  return pos_B.astype(np.int64), pick(batch.targets).astype(np.int64), \
      pick(batch.distance).astype(np.int64)


def source_gradient_norm(model: nnx.Module, batch: Batch, *, which: str = "first",
                         loss_fn: LossFn = cross_entropy) -> dict[int, float]:
  """{distance: mean ||∂loss_t / ∂x_{t - distance}||} at each example's TRUE source.

  The gradient reaching the one input the target depends on, grouped by the dependency
  distance the task put there: the gradient-side twin of accuracy-by-distance.
  """
  pos_B, targets_B, dist_B = scored_positions(batch, which)
  g_BxTxE = embedding_gradients(model, batch.inputs, pos_B, targets_B, loss_fn)
  src_B = pos_B - dist_B
  norm_B = np.linalg.norm(np.asarray(g_BxTxE, np.float64)[np.arange(len(src_B)), src_B], axis=-1)
  return {int(d): float(norm_B[dist_B == d].mean()) for d in np.unique(dist_B)}


def fit_decay_rate(ks: np.ndarray, norms: np.ndarray) -> float:
  """Per-step log decay r of norms ≈ C·exp(r·k) (least squares on log norms).

  r < 0 means the gradient shrinks by a factor exp(r) per step back; a linear recurrence
  h_t = w·h_{t-1} + x_t gives exactly r = log|w|. Zero (underflowed) and NaN norms are
  dropped before fitting.
  """
  return fit_exponential(ks, norms)[0]
