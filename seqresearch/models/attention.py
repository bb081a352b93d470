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


ATTENTION_IMPLEMENTATIONS = ("vmap", "chunked", "xla", "cudnn")


def _causal_chunks(length: int) -> int:
  """Query chunks of the causal fast path: enough that each chunk's logits stay small (the
  causal skip saves (N-1)/2N of the work), few enough that the unrolled program stays small."""
  return max(1, min(8, length // 64))


def chunked_causal_attention(q_BxTxHxK: jax.Array, k_BxTxHxK: jax.Array,
                             v_BxTxHxK: jax.Array, num_chunks: int) -> jax.Array:
  """Causal self-attention computed per query chunk against its key prefix only.

  Same value as `multi_head_attention` with `causal_mask(T)`: chunk [lo, hi) of the queries
  attends to keys [0, hi), so the keys after the chunk (masked anyway) are never touched.
  This skips about half of the T x T work and memory, and keeps each chunk's logits small.

  Returns:
    out_BxTxHxK in v's dtype.
  """
  t, k_dim = q_BxTxHxK.shape[1], q_BxTxHxK.shape[-1]
  # Heads before time, once: every chunk then reads contiguous BxHx(prefix)xK blocks.
  q_BxHxTxK, k_BxHxTxK, v_BxHxTxK = (
      jnp.swapaxes(a, 1, 2).astype(jnp.float32) for a in (q_BxTxHxK, k_BxTxHxK, v_BxTxHxK))
  q_BxHxTxK = q_BxHxTxK * (1.0 / math.sqrt(k_dim))
  bounds = sorted({round(i * t / num_chunks) for i in range(num_chunks + 1)})
  sizes = [hi - lo for lo, hi in zip(bounds[:-1], bounds[1:])]
  # Split (not sliced): the gradient of a split is a concatenation, of a slice a zero-padded
  # full-size array per chunk.
  split = lambda a: jnp.split(a, list(bounds[1:-1]), axis=2)  # noqa: E731
  q_blocks, k_blocks, v_blocks = split(q_BxHxTxK), split(k_BxHxTxK), split(v_BxHxTxK)
  outs = []
  for i, (lo, c) in enumerate(zip(bounds, sizes)):
    hi = lo + c
    k_prefix = jnp.concatenate(k_blocks[:i + 1], axis=2) if i else k_blocks[0]
    v_prefix = jnp.concatenate(v_blocks[:i + 1], axis=2) if i else v_blocks[0]
    logits_BxHxCxS = jnp.einsum("bhck,bhsk->bhcs", q_blocks[i], k_prefix)
    allowed_CxS = (lo + jnp.arange(c))[:, None] >= jnp.arange(hi)[None, :]
    w_BxHxCxS = jax.nn.softmax(jnp.where(allowed_CxS, logits_BxHxCxS, _MASK_VALUE), axis=-1)
    outs.append(jnp.einsum("bhcs,bhsk->bhck", w_BxHxCxS, v_prefix))
  out_BxHxTxK = jnp.concatenate(outs, axis=2) if len(outs) > 1 else outs[0]
  return jnp.swapaxes(out_BxHxTxK, 1, 2).astype(v_BxTxHxK.dtype)


class MultiHeadAttention(nnx.Module):
  """Self-attention: fused QKV projection D -> 3D, heads, output projection D -> D.

  The fused projection's 3D outputs are laid out as (3, H, K): [q heads | k heads | v heads].
  `implementation` chooses how the heads are computed when no weights are asked for (same
  values; see ATTENTION_IMPLEMENTATIONS): 'vmap' the reference single head vmapped over heads
  and batch, 'chunked' `chunked_causal_attention`, 'xla' / 'cudnn' `jax.nn.dot_product_attention`
  ('cudnn' on GPU, computing in bfloat16: close to, not equal to, the float32 reference).
  """

  def __init__(self, d_model: int, num_heads: int, *, implementation: str = "vmap",
               rngs: nnx.Rngs):
    if d_model % num_heads:
      raise ValueError(f"num_heads={num_heads} must divide d_model={d_model}.")
    if implementation not in ATTENTION_IMPLEMENTATIONS:
      raise ValueError(f"implementation={implementation!r}: must be one of "
                       f"{ATTENTION_IMPLEMENTATIONS}.")
    self.num_heads = num_heads
    self.head_dim = d_model // num_heads
    self.implementation = implementation
    self.qkv_proj = nnx.Linear(d_model, 3 * d_model, rngs=rngs)
    self.out_proj = nnx.Linear(d_model, d_model, rngs=rngs)

  def _project(self, x_BxTxD: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """q, k, v _BxTxHxK as three matmuls with slices of the fused kernel: their gradients
    then stay three separate arrays (slicing one fused output pads each gradient to 3D)."""
    b, t, d = x_BxTxD.shape
    kernel_Dx3xD = self.qkv_proj.kernel[...].reshape(d, 3, d)
    bias_3xD = self.qkv_proj.bias[...].reshape(3, d)
    return tuple((x_BxTxD @ kernel_Dx3xD[:, i] + bias_3xD[i]).reshape(
        b, t, self.num_heads, self.head_dim) for i in range(3))

  def __call__(self, x_BxTxD: jax.Array, mask: jax.Array | None = None,
               return_weights: bool = False, *, causal: bool = False
               ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Args:
      x_BxTxD: inputs.
      mask: None, mask_TxT or mask_BxTxT (bool, True = may attend).
      return_weights: also return the attention weights (always the 'vmap' form).
      causal: also mask keys after each query (`causal_mask`).

    Returns:
      out_BxTxD, or (out_BxTxD, w_BxHxTxT) when return_weights.
    """
    b, t, d = x_BxTxD.shape
    impl = self.implementation
    if return_weights or mask is not None or impl == "vmap":
      qkv_BxTx3xHxK = self.qkv_proj(x_BxTxD).reshape(b, t, 3, self.num_heads, self.head_dim)
      q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = (qkv_BxTx3xHxK[:, :, i] for i in range(3))
      if causal:
        mask = causal_mask(t) if mask is None else mask & causal_mask(t)
      out_BxTxHxK, w_BxHxTxT = multi_head_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, mask)
    else:
      w_BxHxTxT = None
      q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = self._project(x_BxTxD)
      if impl == "chunked":
        chunks = _causal_chunks(t) if causal else 1
        if causal:
          out_BxTxHxK = chunked_causal_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, chunks)
        else:  # nothing to skip: the batched-head einsum form
          out_BxTxHxK = jax.nn.dot_product_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK,
                                                     implementation="xla")
      elif impl == "xla":
        out_BxTxHxK = jax.nn.dot_product_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK,
                                                   is_causal=causal, implementation="xla")
      else:  # cuDNN's fused attention takes 16-bit inputs only
        out_BxTxHxK = jax.nn.dot_product_attention(
            *(a.astype(jnp.bfloat16) for a in (q_BxTxHxK, k_BxTxHxK, v_BxTxHxK)),
            is_causal=causal, implementation="cudnn").astype(v_BxTxHxK.dtype)
    out_BxTxD = self.out_proj(out_BxTxHxK.reshape(b, t, d))
    if return_weights:
      return out_BxTxD, w_BxHxTxT
    return out_BxTxD
