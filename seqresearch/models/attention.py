"""Scaled dot-product attention: one head written plainly, `jax.vmap`-ed over heads and batch.

Legend:
  B batch, T query positions, S key/value positions, D model width,
  H number of heads, K head dim (D = H * K).
The per-head arrays are laid out BxTxHxK, which is `jax.nn.dot_product_attention`'s "BTNH".
"""

from __future__ import annotations

import math
from typing import Literal, overload

import jax
import jax.numpy as jnp
from flax import nnx

from seqresearch.models.positional import alibi_bias, alibi_slopes, apply_rope

# Finite and with head-room so that subtracting the row max inside softmax cannot overflow;
# exp() of it underflows to exactly 0, so masked positions get exactly zero weight and exactly
# zero gradient.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def float32_accumulation(dtype: jax.typing.DTypeLike) -> jax.lax.DotAlgorithmPreset | None:
  """The `precision` of a matmul whose operands are `dtype` and whose result is float32.

  bfloat16: BF16_BF16_F32, so the backward pass's matmuls (a float32 cotangent against a
  bfloat16 operand) also run on bfloat16 operands instead of falling back to float32, as
  `jax.nn.dot_product_attention` does (jax-ml/jax#24047). float32: None (the default).
  """
  return jax.lax.DotAlgorithmPreset.BF16_BF16_F32 if jnp.dtype(dtype) == jnp.bfloat16 else None


def masked_softmax(logits: jax.Array, allowed: jax.Array | None) -> jax.Array:
  """softmax over the last axis where `allowed` (bool, broadcastable), in float32.

  A row with no allowed key gets all-zero weights (so the attention output there is zero and
  no gradient flows through it), not the uniform weights over every key, future ones
  included, that softmax of an all-masked row would give.
  """
  if allowed is None:
    return jax.nn.softmax(logits, axis=-1)
  w = jax.nn.softmax(jnp.where(allowed, logits, _MASK_VALUE), axis=-1)
  return jnp.where(jnp.any(allowed, axis=-1, keepdims=True), w, 0.0)


def _zero_rows_without_keys(out_BxTxHxK: jax.Array, allowed_BxTxS: jax.Array) -> jax.Array:
  """Zeroes (value and gradient) the outputs of queries whose mask allows no key."""
  has_key_BxT = jnp.any(allowed_BxTxS, axis=-1)
  return jnp.where(has_key_BxT[:, :, None, None], out_BxTxHxK, 0.0).astype(out_BxTxHxK.dtype)


def causal_mask(length: int, window: int | None = None) -> jax.Array:
  """mask_TxT bool: True where query t may attend to key s, i.e. s <= t (and, with a
  window r, t - r < s: the r most recent positions, itself included)."""
  t_T1, s_1T = jnp.arange(length)[:, None], jnp.arange(length)[None, :]
  allowed = s_1T <= t_T1
  if window is not None:
    allowed &= s_1T > t_T1 - window
  return allowed


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
                               mask_TxS: jax.Array | None = None,
                               bias_TxS: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """One head: softmax(q k^T / sqrt(K) + bias) v, with logits and softmax in float32.

  The two matmuls take q, k, v in their own dtype (the compute dtype: bfloat16 or float32) and
  accumulate in float32; the weights are cast to v's dtype for the second one.

  Args:
    q_TxK, k_SxK, v_SxK: queries, keys, values of one head of one example.
    mask_TxS: bool, True where attention is allowed; None allows everything.
    bias_TxS: float32 added to the scaled logits (ALiBi's -m * (t - s)); None adds nothing.

  Returns:
    (out_TxK in v's dtype, w_TxS float32 attention weights): rows sum to 1, except rows
    whose mask allows no key, which are zero (output zero, zero gradient).
  """
  scale = 1.0 / math.sqrt(q_TxK.shape[-1])
  precision = float32_accumulation(v_SxK.dtype)
  logits_TxS = jnp.matmul(q_TxK, k_SxK.T, precision=precision,
                          preferred_element_type=jnp.float32) * scale
  if bias_TxS is not None:
    logits_TxS = logits_TxS + bias_TxS
  w_TxS = masked_softmax(logits_TxS, mask_TxS)
  out_TxK = jnp.matmul(w_TxS.astype(v_SxK.dtype), v_SxK, precision=precision,
                       preferred_element_type=jnp.float32)
  return out_TxK.astype(v_SxK.dtype), w_TxS


def multi_head_attention(q_BxTxHxK: jax.Array, k_BxSxHxK: jax.Array, v_BxSxHxK: jax.Array,
                         mask: jax.Array | None = None, bias_HxTxS: jax.Array | None = None
                         ) -> tuple[jax.Array, jax.Array]:
  """The single head vmapped over heads H, then over batch B (layout as jax.nn's BTNH).

  Args:
    q_BxTxHxK, k_BxSxHxK, v_BxSxHxK: per-head queries, keys, values.
    mask: None, mask_TxS shared by the batch, or mask_BxTxS per example; shared by heads.
    bias_HxTxS: None, or a per-head float32 bias of the logits shared by the batch.

  Returns:
    (out_BxTxHxK, w_BxHxTxS).
  """
  # Per example: heads sit on axis 1 of q_TxHxK (axis 0 of the bias); one mask for all heads.
  per_example = jax.vmap(dot_product_attention_head,
                         in_axes=(1, 1, 1, None, None if bias_HxTxS is None else 0),
                         out_axes=(1, 0))
  mask_axis = 0 if (mask is not None and mask.ndim == 3) else None
  batched = jax.vmap(per_example, in_axes=(0, 0, 0, mask_axis, None), out_axes=(0, 0))
  return batched(q_BxTxHxK, k_BxSxHxK, v_BxSxHxK, mask, bias_HxTxS)


ATTENTION_IMPLEMENTATIONS = ("vmap", "chunked", "xla", "cudnn", "blocked")
RELATIVE_ENCODINGS = ("none", "rope", "alibi")  # what MultiHeadAttention applies itself


def _causal_chunks(length: int) -> int:
  """Query chunks of the causal fast path: enough that each chunk's logits stay small (the
  causal skip saves (N-1)/2N of the work), few enough that the unrolled program stays small."""
  return max(1, min(8, length // 64))


def chunked_causal_attention(q_BxTxHxK: jax.Array, k_BxTxHxK: jax.Array,
                             v_BxTxHxK: jax.Array, num_chunks: int,
                             mask: jax.Array | None = None,
                             alibi_slopes_H: jax.Array | None = None) -> jax.Array:
  """Causal self-attention computed per query chunk against its key prefix only.

  Same value as `multi_head_attention` with `causal_mask(T) & mask`: chunk [lo, hi) of the
  queries attends to keys [0, hi), so the keys after the chunk (masked anyway) are never
  touched. This skips about half of the T x T work and memory, and keeps each chunk's
  logits small. `mask` (None, mask_TxT or mask_BxTxT) further restricts the keys; a query
  left with none outputs zero. `alibi_slopes_H` (None: no bias) adds ALiBi's -m_h * (t - s)
  to head h's logits, formed per chunk (C x prefix), never T x T.

  Returns:
    out_BxTxHxK in v's dtype.
  """
  t, k_dim = q_BxTxHxK.shape[1], q_BxTxHxK.shape[-1]
  # Heads before time, once: every chunk then reads contiguous BxHx(prefix)xK blocks.
  # The matmuls run in the inputs' dtype with float32 accumulation; logits, softmax float32.
  q_BxHxTxK, k_BxHxTxK, v_BxHxTxK = (
      jnp.swapaxes(a, 1, 2) for a in (q_BxTxHxK, k_BxTxHxK, v_BxTxHxK))
  q_BxHxTxK = q_BxHxTxK * jnp.asarray(1.0 / math.sqrt(k_dim), q_BxHxTxK.dtype)
  precision = float32_accumulation(v_BxTxHxK.dtype)
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
    logits_BxHxCxS = jnp.einsum("bhck,bhsk->bhcs", q_blocks[i], k_prefix,
                                precision=precision, preferred_element_type=jnp.float32)
    if alibi_slopes_H is not None:
      logits_BxHxCxS = logits_BxHxCxS + alibi_bias(alibi_slopes_H, lo + jnp.arange(c),
                                                   jnp.arange(hi))[None]
    allowed = (lo + jnp.arange(c))[:, None] >= jnp.arange(hi)[None, :]  # CxS
    if mask is not None:  # BxCxS (or CxS) -> Bx1xCxS, shared by the heads
      allowed = (allowed & mask[lo:hi, :hi] if mask.ndim == 2
                 else allowed[None, None] & mask[:, None, lo:hi, :hi])
    w_BxHxCxS = masked_softmax(logits_BxHxCxS, allowed)
    outs.append(jnp.einsum("bhcs,bhsk->bhck", w_BxHxCxS.astype(v_prefix.dtype), v_prefix,
                           precision=precision, preferred_element_type=jnp.float32))
  out_BxHxTxK = jnp.concatenate(outs, axis=2) if len(outs) > 1 else outs[0]
  return jnp.swapaxes(out_BxHxTxK, 1, 2).astype(v_BxTxHxK.dtype)


def local_causal_attention(q_BxTxHxK: jax.Array, k_BxTxHxK: jax.Array, v_BxTxHxK: jax.Array,
                           window: int, mask: jax.Array | None = None,
                           alibi_slopes_H: jax.Array | None = None) -> jax.Array:
  """Restricted causal self-attention (Vaswani et al. 2017, Table 1 row 4) in O(T * r) memory.

  Query t attends to keys t - r < s <= t (r = `window`), the same value as
  `multi_head_attention` with `causal_mask(T, r) & mask`, without forming any T x T array:
  the queries are cut into blocks of r, and block j attends to key blocks j - 1 and j only
  (2r keys). Work and memory are O(T * r * K) per head.

  Args:
    q_BxTxHxK, k_BxTxHxK, v_BxTxHxK: per-head queries, keys, values.
    window: r >= 1.
    mask: None, mask_TxT or mask_BxTxT further restricting the keys (gathered per block,
      O(T * r)); a query left with no key outputs zero.
    alibi_slopes_H: None, or ALiBi's head slopes: -m_h * (t - s) is added to head h's
      logits (formed per block, O(T * r)).

  Returns:
    out_BxTxHxK in v's dtype.
  """
  b, t, h, k_dim = q_BxTxHxK.shape
  r = window
  nb = -(-t // r)  # blocks; the padded tail's keys come after every real query: never allowed
  def blocks(a_BxTxHxK: jax.Array) -> jax.Array:  # BxNxRxHxK, zero-padded to N * r
    a = jnp.pad(a_BxTxHxK, ((0, 0), (0, nb * r - t), (0, 0), (0, 0)))
    return a.reshape(b, nb, r, h, k_dim)

  # The matmuls run in the inputs' dtype with float32 accumulation; logits, softmax float32.
  q_BxNxRxHxK = blocks(q_BxTxHxK) * jnp.asarray(1.0 / math.sqrt(k_dim), q_BxTxHxK.dtype)
  precision = float32_accumulation(v_BxTxHxK.dtype)
  k_BxNxRxHxK, v_BxNxRxHxK = blocks(k_BxTxHxK), blocks(v_BxTxHxK)
  # Keys of block j: blocks j - 1 (zeros before the start) and j.
  prev = lambda a: jnp.pad(a, ((0, 0), (1, 0), (0, 0), (0, 0), (0, 0)))[:, :-1]  # noqa: E731
  k_BxNx2RxHxK = jnp.concatenate([prev(k_BxNxRxHxK), k_BxNxRxHxK], axis=2)
  v_BxNx2RxHxK = jnp.concatenate([prev(v_BxNxRxHxK), v_BxNxRxHxK], axis=2)
  logits = jnp.einsum("bnqhk,bnshk->bnhqs", q_BxNxRxHxK, k_BxNx2RxHxK,
                      precision=precision, preferred_element_type=jnp.float32)
  t_NxR = jnp.arange(nb)[:, None] * r + jnp.arange(r)[None, :]  # query positions
  s_Nx2R = jnp.arange(nb)[:, None] * r - r + jnp.arange(2 * r)[None, :]  # key positions
  diff_NxRx2R = t_NxR[:, :, None] - s_Nx2R[:, None, :]
  allowed = (diff_NxRx2R >= 0) & (diff_NxRx2R < r) & (s_Nx2R[:, None, :] >= 0)
  if alibi_slopes_H is not None:  # per block: NxHxRx2R
    bias = jax.vmap(alibi_bias, in_axes=(None, 0, 0))(alibi_slopes_H, t_NxR, s_Nx2R)
    logits = logits + bias[None]
  allowed = allowed[:, None]  # Nx1xRx2R: shared by the heads
  if mask is not None:
    rows, cols = jnp.minimum(t_NxR, t - 1), jnp.clip(s_Nx2R, 0, t - 1)
    m = mask if mask.ndim == 3 else mask[None]
    allowed = allowed[None] & m[:, rows[:, :, None], cols[:, None, :]][:, :, None]
  w = masked_softmax(logits, allowed)
  out_BxNxRxHxK = jnp.einsum("bnhqs,bnshk->bnqhk", w.astype(v_BxNx2RxHxK.dtype), v_BxNx2RxHxK,
                             precision=precision, preferred_element_type=jnp.float32)
  return out_BxNxRxHxK.reshape(b, nb * r, h, k_dim)[:, :t].astype(v_BxTxHxK.dtype)


class MultiHeadAttention(nnx.Module):
  """Self-attention: fused QKV projection D -> 3D, heads, output projection D -> D.

  The fused projection's 3D outputs are laid out as (3, H, K): [q heads | k heads | v heads].
  `implementation` chooses how the heads are computed when no weights are asked for (same
  values; see ATTENTION_IMPLEMENTATIONS): 'vmap' the reference single head vmapped over heads
  and batch, 'chunked' `chunked_causal_attention` (causal only: anything else raises),
  'xla' / 'cudnn' `jax.nn.dot_product_attention` ('cudnn' on GPU, computing in bfloat16:
  close to, not equal to, the float32 reference), 'blocked' `local_causal_attention` (needs a
  window). With `window` r, query t attends to the r most recent positions only (restricted
  self-attention); causal must then be True. In every implementation a query whose mask
  leaves no key outputs zero and passes zero gradient.

  `pos_encoding` 'rope' rotates q and k (`positional.apply_rope`) before any implementation
  sees them; 'alibi' adds `positional.alibi_bias` to the logits in every implementation
  ('xla' / 'cudnn' through the `bias` argument of `jax.nn.dot_product_attention`); 'none'
  (any position added to the inputs is the caller's business) adds nothing. Positions are
  0..T-1; the returned weights include the encoding's effect.

  Mixed precision: the parameters are float32 and every matmul takes `dtype` (float32 or
  bfloat16) operands. The two attention matmuls ask for float32 results
  (`preferred_element_type` with `float32_accumulation`): the logits and the softmax are
  float32. The QKV and output projections are `nnx.Linear(dtype=dtype)` without a
  preferred_element_type: their results are in `dtype` (in bfloat16, rounded), and how they
  accumulate is XLA's choice (float32 on CPU). The layer's output is in `dtype`.
  """

  def __init__(self, d_model: int, num_heads: int, *, implementation: str = "vmap",
               window: int | None = None, dtype: jax.typing.DTypeLike = jnp.float32,
               pos_encoding: Literal["none", "rope", "alibi"] = "none", rngs: nnx.Rngs):
    if d_model % num_heads:
      raise ValueError(f"num_heads={num_heads} must divide d_model={d_model}.")
    if implementation not in ATTENTION_IMPLEMENTATIONS:
      raise ValueError(f"implementation={implementation!r}: must be one of "
                       f"{ATTENTION_IMPLEMENTATIONS}.")
    if implementation == "blocked" and window is None:
      raise ValueError("implementation='blocked' is local attention: it needs a window.")
    if window is not None and implementation not in ("vmap", "blocked", "xla"):
      raise ValueError(f"implementation={implementation!r} with window={window}: local "
                       "attention runs as 'vmap', 'blocked' or 'xla'.")
    if pos_encoding not in RELATIVE_ENCODINGS:
      raise ValueError(f"pos_encoding={pos_encoding!r}: must be one of {RELATIVE_ENCODINGS}.")
    if pos_encoding == "rope" and (d_model // num_heads) % 2:
      raise ValueError(f"pos_encoding='rope' needs an even head dim, got "
                       f"d_model / num_heads = {d_model // num_heads}.")
    self.pos_encoding = pos_encoding
    self.num_heads = num_heads
    self.head_dim = d_model // num_heads
    self.implementation = implementation
    self.window = window
    self.dtype = jnp.dtype(dtype)
    self.qkv_proj = nnx.Linear(d_model, 3 * d_model, dtype=self.dtype, rngs=rngs)
    self.out_proj = nnx.Linear(d_model, d_model, dtype=self.dtype, rngs=rngs)

  def _project(self, x_BxTxD: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """q, k, v _BxTxHxK as three matmuls with slices of the fused kernel: their gradients
    then stay three separate arrays (slicing one fused output pads each gradient to 3D)."""
    b, t, d = x_BxTxD.shape
    x_BxTxD = x_BxTxD.astype(self.dtype)
    kernel_Dx3xD = self.qkv_proj.kernel[...].astype(self.dtype).reshape(d, 3, d)
    bias_3xD = self.qkv_proj.bias[...].astype(self.dtype).reshape(3, d)
    return tuple((x_BxTxD @ kernel_Dx3xD[:, i] + bias_3xD[i][None, None]).reshape(
        b, t, self.num_heads, self.head_dim) for i in range(3))

  @overload
  def __call__(self, x_BxTxD: jax.Array, mask: jax.Array | None = ...,
               return_weights: Literal[False] = ..., *, causal: bool = ...) -> jax.Array: ...

  @overload
  def __call__(self, x_BxTxD: jax.Array, mask: jax.Array | None = ...,
               return_weights: Literal[True] = ..., *, causal: bool = ...
               ) -> tuple[jax.Array, jax.Array]: ...

  def __call__(self, x_BxTxD, mask=None, return_weights=False, *, causal=False):
    """Args:
      x_BxTxD: inputs.
      mask: None, mask_TxT or mask_BxTxT (bool, True = may attend).
      return_weights: also return the attention weights (always the 'vmap' form).
      causal: also mask keys after each query (`causal_mask`).

    Returns:
      out_BxTxD, or (out_BxTxD, w_BxHxTxT) when return_weights.

    Raises:
      ValueError: 'chunked' or a window without causal=True (they compute causal attention
        only; choose 'vmap' or 'xla' for bidirectional attention).
    """
    b, t, d = x_BxTxD.shape
    impl = "vmap" if return_weights else self.implementation
    if not causal and (impl == "chunked" or self.window is not None):
      raise ValueError(f"attention={self.implementation!r}"
                       f"{'' if self.window is None else f' with window={self.window}'}: "
                       "computes causal attention only, but causal=False; use 'vmap' or 'xla'.")
    w_BxHxTxT = None
    if impl == "vmap":
      qkv_BxTx3xHxK = self.qkv_proj(x_BxTxD).reshape(b, t, 3, self.num_heads, self.head_dim)
      q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = (qkv_BxTx3xHxK[:, :, i] for i in range(3))
    else:
      q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = self._project(x_BxTxD)
    positions_T = jnp.arange(t)
    if self.pos_encoding == "rope":
      q_BxTxHxK, k_BxTxHxK = (apply_rope(a, positions_T) for a in (q_BxTxHxK, k_BxTxHxK))
    slopes_H = jnp.asarray(alibi_slopes(self.num_heads)) if self.pos_encoding == "alibi" else None
    if impl == "vmap":
      if causal:
        band = causal_mask(t, self.window)
        mask = band if mask is None else mask & (band if mask.ndim == 2 else band[None])
      bias_HxTxT = None if slopes_H is None else alibi_bias(slopes_H, positions_T, positions_T)
      out_BxTxHxK, w_BxHxTxT = multi_head_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, mask,
                                                    bias_HxTxT)
    elif impl == "chunked":
      out_BxTxHxK = chunked_causal_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK,
                                             _causal_chunks(t), mask, slopes_H)
    elif impl == "blocked":
      out_BxTxHxK = local_causal_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, self.window, mask,
                                           slopes_H)
    else:
      out_BxTxHxK = self._dot_product_attention(impl, q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, mask,
                                                causal, slopes_H)
    out_BxTxD = self.out_proj(out_BxTxHxK.reshape(b, t, d))
    if return_weights:
      return out_BxTxD, w_BxHxTxT
    return out_BxTxD

  def _dot_product_attention(self, impl: str, q_BxTxHxK: jax.Array, k_BxTxHxK: jax.Array,
                             v_BxTxHxK: jax.Array, mask: jax.Array | None,
                             causal: bool, alibi_slopes_H: jax.Array | None = None) -> jax.Array:
    """`jax.nn.dot_product_attention` ('xla' or 'cudnn'), rows without a key zeroed; ALiBi
    goes in through its `bias` argument (a 1xHxTxT array: 'xla' forms T x T logits anyway)."""
    t = q_BxTxHxK.shape[1]
    window = None if self.window is None else (self.window - 1, 0)
    mask_Bx1xTxS = None if mask is None else (
        mask[:, None] if mask.ndim == 3 else mask[None, None])
    bias_1xHxTxT = None if alibi_slopes_H is None else (
        alibi_bias(alibi_slopes_H, jnp.arange(t), jnp.arange(t))[None])
    args = (q_BxTxHxK, k_BxTxHxK, v_BxTxHxK)
    if impl == "cudnn":  # cuDNN's fused attention takes 16-bit inputs (and bias) only
      args = tuple(a.astype(jnp.bfloat16) for a in args)
      bias_1xHxTxT = None if bias_1xHxTxT is None else bias_1xHxTxT.astype(jnp.bfloat16)
    out_BxTxHxK = jax.nn.dot_product_attention(
        *args, bias=bias_1xHxTxT, mask=mask_Bx1xTxS, is_causal=causal,
        local_window_size=window, implementation=impl).astype(v_BxTxHxK.dtype)
    if mask is None:  # causal rows always keep their own key
      return out_BxTxHxK
    allowed = mask if mask.ndim == 3 else mask[None]  # BxTxS or 1xTxS
    if causal:
      allowed = allowed & causal_mask(t, self.window)[None]
    return _zero_rows_without_keys(out_BxTxHxK, allowed)
