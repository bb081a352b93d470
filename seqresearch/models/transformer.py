"""Decoder-style pre-LayerNorm Transformer language model (causal by default).

Legend:
  B batch, T time, V vocabulary, D model width, H heads, K head dim (D = H * K),
  F MLP hidden width, L max_len (positions the encoding supports).

`embed(tokens)` returns the *token* embeddings only; `from_embeddings` adds the positional
encoding ('sinusoidal', 'learned'), or the attention layers apply it ('rope', 'alibi',
`models.positional`). So d logits / d embed(tokens) is the gradient w.r.t. what each token
contributes, the same quantity as for the recurrent models (which have no positions to add).

Mixed precision (`settings.compute_dtype`): parameters stay float32; every matmul (QKV, the
attention products, the output projection, the MLP, the readout) takes compute-dtype operands
and the sublayer activations run in the compute dtype. The attention products and the
readout ask for float32 results (`preferred_element_type`, `float32_accumulation`); the QKV
and output projections and the MLP (`nnx.Linear(dtype=...)`, no preferred_element_type)
return compute-dtype results: XLA picks their accumulation (float32 on CPU, where a
bfloat16 dot is computed in float32 and rounded) and nothing here pins it elsewhere. The
attention logits and softmax, the LayerNorm statistics (and outputs, cast to the compute
dtype after), the residual stream (a running sum, like an accumulator), the token and
position embeddings and the returned logits stay float32.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import jax
import jax.numpy as jnp
from flax import nnx

from seqresearch.models.attention import (RELATIVE_ENCODINGS, MultiHeadAttention,
                                          float32_accumulation)
from seqresearch.models.config import TransformerSettings, compute_dtype_of


# The encodings applied inside attention (the others are added in `from_embeddings`).
_IN_ATTENTION = {e: e for e in RELATIVE_ENCODINGS}


def sinusoidal_encoding(length: int, width: int) -> jax.Array:
  """Fixed encoding of Vaswani et al. (2017), pe_TxD float32.

  pe[t, 2i] = sin(t / 10000^(2i/D)), pe[t, 2i+1] = cos(t / 10000^(2i/D)) (interleaved; an odd
  D drops the last cosine column).
  """
  pos_Tx1 = jnp.arange(length, dtype=jnp.float32)[:, None]
  freq_F = jnp.exp(-math.log(10000.0) * jnp.arange(0, width, 2, dtype=jnp.float32) / width)
  angle_TxF = pos_Tx1 * freq_F[None, :]
  pe_TxFx2 = jnp.stack([jnp.sin(angle_TxF), jnp.cos(angle_TxF)], axis=-1)
  return pe_TxFx2.reshape(length, -1)[:, :width]


@jax.custom_jvp
def gelu_exact(x: jax.Array) -> jax.Array:
  """x * Phi(x), the exact (erf) GELU: `jax.nn.gelu(x, approximate=False)` to float rounding.

  Its derivative Phi(x) + x * phi(x) is formed in the forward pass, so the backward pass
  keeps one array for it instead of the intermediates autodiff would keep. Phi comes from
  erf, not from erfc as in jax.nn.gelu: XLA:CPU's erfc keeps two more NxF temporaries.
  """
  return _gelu_and_slope(x)[0]


def _gelu_and_slope(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(gelu_exact(x), its derivative Phi(x) + x * phi(x))."""
  cdf = 0.5 * (1.0 + jax.lax.erf(x * math.sqrt(0.5)))
  pdf = jnp.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
  return x * cdf, cdf + x * pdf


@gelu_exact.defjvp
def _gelu_exact_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  y, slope = _gelu_and_slope(x)
  return y, t * slope


@jax.custom_vjp
def mlp_batched_grads(x_NxD: jax.Array, w1_DxF: jax.Array, b1_F: jax.Array, w2_FxD: jax.Array,
                      b2_D: jax.Array) -> jax.Array:
  """gelu_exact(x @ w1 + b1) @ w2 + b2, with a hand-written backward (mlp='custom_vjp').

  Why: autodiff forms each weight gradient as act^T @ grad with the wide NxF activation on
  the left, which XLA:CPU transposes into a fresh NxF copy; here the narrow NxD side is the
  transposed one, and only two NxF residuals are kept (the activation and GELU's slope).
  """
  return gelu_exact(x_NxD @ w1_DxF + b1_F[None]) @ w2_FxD + b2_D[None]


def _mlp_fwd(x_NxD, w1_DxF, b1_F, w2_FxD, b2_D):
  h_NxF = x_NxD @ w1_DxF + b1_F[None]
  g_NxF, slope_NxF = _gelu_and_slope(h_NxF)
  return g_NxF @ w2_FxD + b2_D[None], (x_NxD, w1_DxF, w2_FxD, g_NxF, slope_NxF)


def _mlp_bwd(residuals, dy_NxD):
  x_NxD, w1_DxF, w2_FxD, g_NxF, slope_NxF = residuals
  dh_NxF = (dy_NxD @ w2_FxD.T) * slope_NxF
  dw2_DxF = dy_NxD.T @ g_NxF  # narrow operand transposed (see docstring)
  dw1_DxF = x_NxD.T @ dh_NxF
  return (dh_NxF @ w1_DxF.T, dw1_DxF, dh_NxF.sum(0), dw2_DxF.T, dy_NxD.sum(0))


mlp_batched_grads.defvjp(_mlp_fwd, _mlp_bwd)


class TransformerBlock(nnx.Module):
  """x + Attn(LN(x)); then x + MLP(LN(x)) with an exact (erf) GELU.

  The attention and MLP forms are the settings' `attention` and `mlp`, resolved for the
  backend ("auto") when the block is built; every form computes the same values. The
  residual stream x stays float32; the LayerNorm outputs are cast to the compute dtype.
  """

  def __init__(self, settings: TransformerSettings, *, rngs: nnx.Rngs):
    d = settings.d_model
    self.dtype = compute_dtype_of(settings)
    self.attn_norm = nnx.LayerNorm(d, rngs=rngs)  # float32 statistics (and output)
    self.attn = MultiHeadAttention(d, settings.num_heads,
                                   implementation=settings.resolved().attention,
                                   window=settings.attention_window, dtype=self.dtype,
                                   pos_encoding=_IN_ATTENTION.get(settings.pos_encoding, "none"),
                                   rngs=rngs)
    self.mlp_norm = nnx.LayerNorm(d, rngs=rngs)
    self.mlp = settings.resolved().mlp
    self.mlp_in = nnx.Linear(d, settings.mlp_dim, dtype=self.dtype, rngs=rngs)
    self.mlp_out = nnx.Linear(settings.mlp_dim, d, dtype=self.dtype, rngs=rngs)

  def __call__(self, x_BxTxD: jax.Array, causal: bool, return_weights: bool = False
               ) -> tuple[jax.Array, jax.Array | None]:
    """Args: x_BxTxD, causal, return_weights. Returns (x_BxTxD, w_BxHxTxT or None)."""
    a = self.attn(self.attn_norm(x_BxTxD).astype(self.dtype), return_weights=return_weights,
                  causal=causal)
    a_BxTxD, w_BxHxTxT = a if return_weights else (a, None)
    x_BxTxD = x_BxTxD + a_BxTxD.astype(x_BxTxD.dtype)
    h_BxTxD = self.mlp_norm(x_BxTxD).astype(self.dtype)
    if self.mlp == "custom_vjp":
      b, t, d = h_BxTxD.shape
      params = (self.mlp_in.kernel, self.mlp_in.bias, self.mlp_out.kernel, self.mlp_out.bias)
      m_BxTxD = mlp_batched_grads(h_BxTxD.reshape(b * t, d),
                                  *(p[...].astype(self.dtype) for p in params)
                                  ).reshape(b, t, d)
    else:
      m_BxTxD = self.mlp_out(gelu_exact(self.mlp_in(h_BxTxD)))
    return x_BxTxD + m_BxTxD.astype(x_BxTxD.dtype), w_BxHxTxT


class TransformerLM(nnx.Module):
  """Embed(V, D) (+ positions) -> num_layers pre-LN blocks -> LayerNorm -> Linear(D, V).

  Token embeddings are not scaled by sqrt(D) (no weight tying here); instead they are
  initialised N(0, 1), like the learned position table, so tokens and positions (the
  sinusoids have per-coordinate RMS 1/sqrt(2)) enter the residual stream at the same scale.
  """

  def __init__(self, settings: TransformerSettings, *, vocab_size: int, rngs: nnx.Rngs):
    self.settings = settings
    unit_normal = nnx.initializers.normal(1.0)
    self.embedding = nnx.Embed(vocab_size, settings.d_model, embedding_init=unit_normal,
                               rngs=rngs)
    if settings.pos_encoding == "learned":
      self.pos_table = nnx.Param(unit_normal(rngs.params(), (settings.max_len, settings.d_model)))
    else:
      self.pos_table = None
    self.blocks = nnx.List([TransformerBlock(settings, rngs=rngs)
                            for _ in range(settings.num_layers)])
    self.final_norm = nnx.LayerNorm(settings.d_model, rngs=rngs)
    # A compute-dtype matmul accumulated into float32 logits.
    cdt = compute_dtype_of(settings)
    self.readout = nnx.Linear(settings.d_model, vocab_size, dtype=cdt,
                              precision=float32_accumulation(cdt),
                              preferred_element_type=jnp.float32, rngs=rngs)

  def embed(self, tokens_BxT: jax.Array) -> jax.Array:
    """Token embeddings x_BxTxD (float32), without positions (`from_embeddings` adds them)."""
    return self.embedding(tokens_BxT)

  def _check_length(self, length: int) -> None:
    # Shapes are static, so this plain Python check runs once per trace, never per step.
    if length > self.settings.max_len:
      raise ValueError(
          f"sequence length {length} exceeds model.max_len={self.settings.max_len} "
          f"(pos_encoding={self.settings.pos_encoding!r}); raise model.max_len to at least "
          f"{length} or feed shorter sequences.")

  @overload
  def from_embeddings(self, x_BxTxD: jax.Array,
                      return_attention: Literal[False] = ...) -> jax.Array: ...

  @overload
  def from_embeddings(self, x_BxTxD: jax.Array, return_attention: Literal[True] = ...
                      ) -> tuple[jax.Array, list[jax.Array]]: ...

  def from_embeddings(self, x_BxTxD, return_attention=False):
    """Adds positions ('sinusoidal', 'learned'; 'rope' and 'alibi' act inside attention),
    runs the blocks and the readout.

    Args:
      x_BxTxD: token embeddings (as from `embed`).
      return_attention: also return every layer's attention weights (with RoPE's and
        ALiBi's effect included).

    Returns:
      logits_BxTxV float32, or (logits_BxTxV, [w_BxHxTxT per layer]) when return_attention.
    """
    t, d = x_BxTxD.shape[1], x_BxTxD.shape[2]
    self._check_length(t)
    pos = self.settings.pos_encoding
    if pos == "sinusoidal":
      x_BxTxD = x_BxTxD + sinusoidal_encoding(t, d)[None]
    elif pos == "learned":
      x_BxTxD = x_BxTxD + self.pos_table[:t][None]
    weights = []
    for block in self.blocks:
      x_BxTxD, w_BxHxTxT = block(x_BxTxD, self.settings.causal, return_attention)
      weights.append(w_BxHxTxT)
    h_BxTxD = self.final_norm(x_BxTxD).astype(compute_dtype_of(self.settings))
    logits_BxTxV = self.readout(h_BxTxD).astype(jnp.float32)
    if return_attention:
      return logits_BxTxV, weights
    return logits_BxTxV

  @overload
  def __call__(self, tokens_BxT: jax.Array,
               return_attention: Literal[False] = ...) -> jax.Array: ...

  @overload
  def __call__(self, tokens_BxT: jax.Array, return_attention: Literal[True] = ...
               ) -> tuple[jax.Array, list[jax.Array]]: ...

  def __call__(self, tokens_BxT, return_attention=False):
    """logits_BxTxV (float32) for int32 tokens_BxT; see `from_embeddings` for the weights."""
    return self.from_embeddings(self.embed(tokens_BxT), return_attention=return_attention)
