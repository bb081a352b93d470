"""Scaled dot-product attention: one head written plainly, `jax.vmap`-ed over heads and batch.

Legend:
  B batch, T query positions, S key/value positions, D model width,
  H number of heads, K head dim (D = H * K).
The per-head arrays are laid out BxTxHxK, which is `jax.nn.dot_product_attention`'s "BTNH".
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

# Finite (a fully-masked row then gets uniform weights, not NaN) and with head-room so that
# subtracting the row max inside softmax cannot overflow; exp() of it underflows to exactly
# 0, so masked positions get exactly zero weight and exactly zero gradient.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def causal_mask(length: int) -> jax.Array:
  """mask_TxT bool: True where query t may attend to key s, i.e. s <= t."""
  return jnp.tril(jnp.ones((length, length), dtype=bool))


def padding_mask(valid_BxS: jax.Array, num_queries: int | None = None) -> jax.Array:
  """mask_BxTxS bool: True where key s is a real (unpadded) position.

  Args:
    valid_BxS: bool (or 0/1) marking real key positions.
    num_queries: T; defaults to S (self-attention).

  Returns:
    mask_BxTxS; combine with `causal_mask` by `&`.
  """
  b, s = valid_BxS.shape
  t = s if num_queries is None else num_queries
  return jnp.broadcast_to(valid_BxS.astype(bool)[:, None, :], (b, t, s))


def dot_product_attention_head(q_TxK: jax.Array, k_SxK: jax.Array, v_SxK: jax.Array,
                               mask_TxS: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """One head: softmax(q k^T / sqrt(K)) v, with logits and softmax in float32.

  Args:
    q_TxK, k_SxK, v_SxK: queries, keys, values of one head of one example.
    mask_TxS: bool, True where attention is allowed; None allows everything.

  Returns:
    (out_TxK in v's dtype, w_TxS float32 attention weights, rows summing to 1).
  """
  scale = 1.0 / math.sqrt(q_TxK.shape[-1])
  logits_TxS = (q_TxK.astype(jnp.float32) @ k_SxK.astype(jnp.float32).T) * scale
  if mask_TxS is not None:
    logits_TxS = jnp.where(mask_TxS, logits_TxS, _MASK_VALUE)
  w_TxS = jax.nn.softmax(logits_TxS, axis=-1)
  out_TxK = w_TxS @ v_SxK.astype(jnp.float32)
  return out_TxK.astype(v_SxK.dtype), w_TxS


def multi_head_attention(q_BxTxHxK: jax.Array, k_BxSxHxK: jax.Array, v_BxSxHxK: jax.Array,
                         mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """The single head vmapped over heads H, then over batch B (layout as jax.nn's BTNH).

  Args:
    q_BxTxHxK, k_BxSxHxK, v_BxSxHxK: per-head queries, keys, values.
    mask: None, mask_TxS shared by the batch, or mask_BxTxS per example; shared by heads.

  Returns:
    (out_BxTxHxK, w_BxHxTxS).
  """
  # Per example: heads sit on axis 1 of q_TxHxK; the mask is the same for every head.
  per_example = jax.vmap(dot_product_attention_head, in_axes=(1, 1, 1, None),
                         out_axes=(1, 0))
  mask_axis = 0 if (mask is not None and mask.ndim == 3) else None
  batched = jax.vmap(per_example, in_axes=(0, 0, 0, mask_axis), out_axes=(0, 0))
  return batched(q_BxTxHxK, k_BxSxHxK, v_BxSxHxK, mask)


class MultiHeadAttention(nnx.Module):
  """Self-attention: fused QKV projection D -> 3D, vmapped heads, output projection D -> D.

  The fused projection's 3D outputs are laid out as (3, H, K): [q heads | k heads | v heads].
  """

  def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs):
    if d_model % num_heads:
      raise ValueError(f"num_heads={num_heads} must divide d_model={d_model}.")
    self.num_heads = num_heads
    self.head_dim = d_model // num_heads
    self.qkv_proj = nnx.Linear(d_model, 3 * d_model, rngs=rngs)
    self.out_proj = nnx.Linear(d_model, d_model, rngs=rngs)

  def __call__(self, x_BxTxD: jax.Array, mask: jax.Array | None = None,
               return_weights: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Args:
      x_BxTxD: inputs.
      mask: None, mask_TxT or mask_BxTxT (bool, True = may attend).
      return_weights: also return the attention weights.

    Returns:
      out_BxTxD, or (out_BxTxD, w_BxHxTxT) when return_weights.
    """
    b, t, d = x_BxTxD.shape
    qkv_BxTx3xHxK = self.qkv_proj(x_BxTxD).reshape(b, t, 3, self.num_heads, self.head_dim)
    q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = (qkv_BxTx3xHxK[:, :, i] for i in range(3))
    out_BxTxHxK, w_BxHxTxT = multi_head_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, mask)
    out_BxTxD = self.out_proj(out_BxTxHxK.reshape(b, t, d))
    if return_weights:
      return out_BxTxD, w_BxHxTxT
    return out_BxTxD
