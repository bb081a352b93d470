"""Relative positional encodings applied inside attention: RoPE and ALiBi.

Legend:
  B batch, T query positions, S key positions, H heads, K head dim.

Neither adds anything to the token embeddings (the residual stream carries no positions):
- RoPE (Su et al. 2021, "RoFormer", eq. 34) rotates each head's queries and keys, so the
  score q_t . k_s depends on the positions only through the offset t - s.
- ALiBi (Press et al. 2022, "Train Short, Test Long", Sec. 3) adds -m_h * (t - s) to head
  h's score of query t for key s, with fixed head slopes m_h.
Both are computed in float32 whatever the compute dtype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

ROPE_BASE = 10000.0  # RoFormer's base of the rotation frequencies


def rope_angles(positions_T: jax.Array, head_dim: int, base: float = ROPE_BASE) -> jax.Array:
  """angle_TxP float32 (P = K / 2): angle[t, i] = position_t * base^(-2i / K).

  Raises:
    ValueError: head_dim is odd (RoPE rotates pairs of coordinates).
  """
  if head_dim % 2:
    raise ValueError(f"RoPE needs an even head dim, got {head_dim}.")
  freq_P = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
  return jnp.asarray(positions_T, jnp.float32)[:, None] * freq_P[None, :]


def apply_rope(x_BxTxHxK: jax.Array, positions_T: jax.Array,
               base: float = ROPE_BASE) -> jax.Array:
  """Rotates coordinate pairs (2i, 2i+1) of every head by angle position_t * base^(-2i/K).

  RoFormer's rotary embedding (Su et al. 2021, eq. 34): a rotation of each 2-d pair, so norms
  are kept and (R_t q) . (R_s k) = q . R_{s-t} k depends on t - s only.

  Args:
    x_BxTxHxK: per-head queries or keys (any float dtype).
    positions_T: the position of each of the T entries (int or float).
    base: the frequency base (10000 in the paper).

  Returns:
    x_BxTxHxK rotated, in x's dtype (the rotation itself is computed in float32).
  """
  b, t, h, k = x_BxTxHxK.shape
  angle_TxP = rope_angles(positions_T, k, base)
  cos_1xTx1xP, sin_1xTx1xP = (f(angle_TxP)[None, :, None, :] for f in (jnp.cos, jnp.sin))
  x_BxTxHxPx2 = x_BxTxHxK.astype(jnp.float32).reshape(b, t, h, k // 2, 2)
  even, odd = x_BxTxHxPx2[..., 0], x_BxTxHxPx2[..., 1]
  rotated = jnp.stack([even * cos_1xTx1xP - odd * sin_1xTx1xP,
                       even * sin_1xTx1xP + odd * cos_1xTx1xP], axis=-1)
  return rotated.reshape(b, t, h, k).astype(x_BxTxHxK.dtype)


def alibi_slopes(num_heads: int) -> np.ndarray:
  """slopes_H float32: ALiBi's head slopes (Press et al. 2022, Sec. 3).

  For H a power of two: the geometric sequence m_h = 2^(-8h/H), h = 1..H (H = 8: 1/2 .. 1/256).
  Otherwise (the paper's rule, its code's `get_slopes`): the H' = 2^floor(log2 H) slopes of
  H', then every other slope of 2H' (the 1st, 3rd, ...) until there are H.

  Raises:
    ValueError: num_heads < 1.
  """
  if num_heads < 1:
    raise ValueError(f"ALiBi needs at least one head, got {num_heads}.")

  def geometric(n: int) -> list[float]:
    return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

  closest = 2 ** int(math.floor(math.log2(num_heads)))
  slopes = geometric(closest)
  slopes += geometric(2 * closest)[0::2][:num_heads - closest]
  return np.asarray(slopes, dtype=np.float32)


def alibi_bias(slopes_H: jax.Array, query_positions_T: jax.Array,
               key_positions_S: jax.Array) -> jax.Array:
  """bias_HxTxS float32 = -m_h * |t - s| (Press et al. 2022, eq. of Sec. 3).

  For causal attention only s <= t is ever allowed, where |t - s| = t - s: the paper's bias.
  Bidirectional attention gets the symmetric -m_h * |t - s| (the paper defines the causal case).
  """
  t_Tx1 = jnp.asarray(query_positions_T, jnp.float32)[:, None]
  s_1xS = jnp.asarray(key_positions_S, jnp.float32)[None, :]
  return -jnp.asarray(slopes_H, jnp.float32)[:, None, None] * jnp.abs(t_Tx1 - s_1xS)[None]
