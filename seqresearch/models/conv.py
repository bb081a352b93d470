"""Causal convolutional language model: Vaswani et al. (2017), Table 1 row 3.

Legend:
  T time, B batch, D model width, k kernel size, P = (k - 1) * dilation past inputs a layer
  keeps to continue a sequence.

Each layer is a pre-LayerNorm residual block x + GELU(conv(LN(x))), conv a causal D -> D
convolution with k taps: y_t = sum_j W_j x_{t - j * dilation} + b. Per layer O(k * n * d^2)
FLOPs. A stack of L layers sees L (k - 1) + 1 positions back with dilation 1 (maximum path
length O(n / k) layers), or k^L with dilation k^l in layer l (WaveNet, van den Oord et al.
2016; path O(log_k n)). The carry is the P most recent inputs of each layer, so chunked
evaluation continues a sequence exactly.

Mixed precision (`compute_dtype`): the convolution reads LN(x) and the float32 taps in the
compute dtype and sums in float32; GELU runs in the compute dtype; the residual stream
(kept float32, like Mamba's `residual_in_fp32`), the LayerNorm and the carried buffer are
float32.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from seqresearch.models import precision
from seqresearch.models.config import check_compute_dtype, check_positive, compute_dtype_of

DILATIONS = ("none", "exponential")


@dataclasses.dataclass(frozen=True)
class ConvSettings:
  """A stack of causal convolution blocks between a token embedding and a readout.

  Attributes:
    d_model: D, the width of the residual stream (and the embedding).
    kernel_size: k, taps per convolution.
    num_layers: L, stacked blocks.
    dilation: 'none' (every layer dilation 1: receptive field L (k - 1) + 1) or
      'exponential' (layer l has dilation k^l: receptive field k^L).
    compute_dtype: 'float32' or 'bfloat16': the convolutions' and the readout's matmul
      operands (float32 sums) and the GELU; parameters, the residual stream, LayerNorm, the
      carried buffer, the logits, loss and metrics stay float32.
  """

  is_recurrent: ClassVar[bool] = True  # carry-based chunked evaluation (a buffer of inputs)
  final_norm: ClassVar[bool] = True

  d_model: int = 64
  kernel_size: int = 4
  num_layers: int = 4
  dilation: Literal["none", "exponential"] = "exponential"
  compute_dtype: Literal["float32", "bfloat16"] = "float32"

  def __post_init__(self) -> None:
    check_compute_dtype(self)
    check_positive(self, "d_model", "kernel_size", "num_layers")
    if self.dilation not in DILATIONS:
      raise ValueError(f"model.dilation={self.dilation!r}: must be one of {DILATIONS}.")

  @property
  def embed_dim(self) -> int:
    return self.d_model

  def receptive_field(self) -> int:
    """Positions (itself included) the last layer's output at t depends on."""
    if self.dilation == "none":
      return self.num_layers * (self.kernel_size - 1) + 1
    return self.kernel_size ** self.num_layers


def shifted_inputs(x_TxBxC: jax.Array, past_BxPxC: jax.Array, kernel_size: int,
                   dilation: int) -> tuple[list[jax.Array], jax.Array]:
  """The k inputs a causal convolution multiplies at every step, and the new buffer.

  Args:
    x_TxBxC: inputs of this chunk. past_BxPxC: the P = (k - 1) * dilation inputs before it.

  Returns:
    ([x shifted by j * dilation steps, TxBxC, for taps j = 0 .. k-1], new past_BxPxC).
  """
  t, p = x_TxBxC.shape[0], past_BxPxC.shape[1]
  full_SxBxC = jnp.concatenate([jnp.swapaxes(past_BxPxC, 0, 1).astype(x_TxBxC.dtype),
                                x_TxBxC], axis=0)  # S = P + T
  shifted = [full_SxBxC[p - j * dilation:p - j * dilation + t] for j in range(kernel_size)]
  return shifted, jnp.swapaxes(full_SxBxC[full_SxBxC.shape[0] - p:], 0, 1)


class ConvLayer(nnx.Module):
  """x + GELU(causal_conv(LN(x))), time-major; the `recurrent.ScanLayer` interface."""

  def __init__(self, settings: ConvSettings, in_features: int, layer_index: int = 0, *,
               rngs: nnx.Rngs):
    d, k = settings.d_model, settings.kernel_size
    if in_features != d:
      raise ValueError(f"conv layer input width {in_features} != model.d_model={d}.")
    self.out_features = d
    self.kernel_size = k
    self.norm = nnx.LayerNorm(d, rngs=rngs)
    # One DxD matrix per tap, lecun-normal over the k * D inputs a step reads.
    self.taps_KxDxD = nnx.Param(jax.random.normal(rngs.params(), (k, d, d)) / math.sqrt(k * d))
    self.bias_D = nnx.Param(jnp.zeros((d,), jnp.float32))
    self.dilation = k ** layer_index if settings.dilation == "exponential" else 1
    self.compute_dtype = compute_dtype_of(settings).name

  def initial_carry(self, batch_size: int) -> jax.Array:
    """Zero buffer past_BxPxD of the P = (k - 1) * dilation most recent normalised inputs."""
    p = (self.kernel_size - 1) * self.dilation
    return jnp.zeros((batch_size, p, self.out_features), jnp.float32)

  def scan(self, x_TxBxD: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x + GELU(conv(LN(x))) _TxBxD, the buffer after the last step)."""
    shifted, carry = shifted_inputs(self.norm(x_TxBxD), carry, self.kernel_size, self.dilation)
    taps = self.taps_KxDxD[...]
    dtype = self.compute_dtype
    y_TxBxD = sum(precision.matmul(s, taps[j], dtype) for j, s in enumerate(shifted))
    y_TxBxD = (y_TxBxD + self.bias_D[...][None, None]).astype(dtype)
    return x_TxBxD + jax.nn.gelu(y_TxBxD).astype(jnp.float32), carry

