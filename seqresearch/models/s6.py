"""Selective state-space model: Mamba's S6 block (Gu & Dao 2023), in pure JAX.

Legend:
  T time, B batch, D model width, E = expand * D inner width, N state size per channel,
  R rank of the step-size projection, k convolution taps.

Block (their Fig. 3), pre-LayerNorm with a residual: [x_in, z] = in_proj(LN(x));
u = SiLU(causal depthwise conv_k(x_in)); per step t the input-dependent (selective)
  Delta_t = softplus(W_dt (W_r u_t) + b_dt)  (E),  B_t = W_B u_t, C_t = W_C u_t  (N each),
and per channel e the diagonal state h_t[e] (N) follows the zero-order hold of
dh/ds = A h + B u:  h_t = exp(Delta_t A) h_{t-1} + (exp(Delta_t A) - 1) / A * B_t u_t,
y_t = C_t . h_t + D_skip u_t; the output is out_proj(y * SiLU(z)). A = -exp(A_log) with the
S4D-real initialisation A[e, n] = -(n + 1); b_dt is set so that softplus(b_dt) is
log-uniform in [dt_min, dt_max] (their App. on Delta initialisation). The recurrence is
linear in h, so it runs as a sequential or an associative scan (setting `scan`). The carry
is the convolution's last k - 1 inputs and the state h_BxExN.

Mixed precision (`compute_dtype`): in_proj, x_proj, dt_proj and out_proj read their operands
in the compute dtype and sum in float32; the convolution, SiLU and the output gate run in
the compute dtype; the selective scan (Delta, exp(Delta A), B u, h, C h) runs in float32 as
in Mamba's kernels, and so do the LayerNorm and the residual stream (`residual_in_fp32`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from seqresearch.models import linear_scan
from seqresearch.models import precision
from seqresearch.models.config import check_compute_dtype, check_positive, compute_dtype_of
from seqresearch.models.conv import shifted_inputs


@dataclasses.dataclass(frozen=True)
class S6Settings:
  """A stack of Mamba (S6) blocks between a token embedding and a readout.

  Attributes:
    d_model: D, the width of the residual stream (and the embedding).
    state_size: N, state channels per inner channel.
    expand: E = expand * D inner channels.
    conv_kernel: k, taps of the causal depthwise convolution.
    dt_rank: R, rank of Delta's projection (Mamba: ceil(D / 16)).
    dt_min, dt_max: range of softplus(b_dt) at init (log-uniform), in units of steps.
    num_layers: stacked blocks.
    scan: 'sequential', 'associative' (same values; O(T) vs O(log T) depth) or 'auto'.
    compute_dtype: 'float32' or 'bfloat16': the projections' matmul operands (float32 sums)
      and the convolution, SiLU and gate activations; parameters, the selective scan and its
      state, LayerNorm, the residual stream, the logits, loss and metrics stay float32.
  """

  is_recurrent: ClassVar[bool] = True
  final_norm: ClassVar[bool] = True

  d_model: int = 64
  state_size: int = 16
  expand: int = 2
  conv_kernel: int = 4
  dt_rank: int = 4
  dt_min: float = 0.001
  dt_max: float = 0.1
  num_layers: int = 2
  scan: Literal["auto", "sequential", "associative"] = "auto"
  compute_dtype: Literal["float32", "bfloat16"] = "float32"

  def __post_init__(self) -> None:
    check_compute_dtype(self)
    check_positive(self, "d_model", "state_size", "expand", "conv_kernel", "dt_rank",
                   "num_layers")
    for name in ("dt_min", "dt_max"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"model.{name}={value!r}: must be a finite number.")
    if not 0.0 < self.dt_min <= self.dt_max:
      raise ValueError(f"model.dt_min={self.dt_min!r}, model.dt_max={self.dt_max!r}: must "
                       "satisfy 0 < dt_min <= dt_max.")
    linear_scan.check_scan(self.scan)

  @property
  def embed_dim(self) -> int:
    return self.d_model


class S6Layer(nnx.Module):
  """x + Mamba(LN(x)), time-major; the `recurrent.ScanLayer` interface."""

  def __init__(self, settings: S6Settings, in_features: int, layer_index: int = 0, *,
               rngs: nnx.Rngs):
    del layer_index
    d, n, k = settings.d_model, settings.state_size, settings.conv_kernel
    e, r = settings.expand * d, settings.dt_rank
    if in_features != d:
      raise ValueError(f"S6 layer input width {in_features} != model.d_model={d}.")
    self.out_features, self.inner, self.state_size, self.conv_kernel = d, e, n, k
    self.scan_form = linear_scan.resolve_scan(settings.scan)
    self.compute_dtype = compute_dtype_of(settings).name
    self.norm = nnx.LayerNorm(d, rngs=rngs)
    self.in_proj = nnx.Linear(d, 2 * e, use_bias=False, rngs=rngs)
    self.conv_KxE = nnx.Param(jax.random.uniform(rngs.params(), (k, e), minval=-1.0,
                                                 maxval=1.0) / math.sqrt(k))
    self.conv_bias_E = nnx.Param(jnp.zeros((e,), jnp.float32))
    self.x_proj = nnx.Linear(e, r + 2 * n, use_bias=False, rngs=rngs)  # -> [dt_r, B, C]
    self.dt_proj = nnx.Linear(r, e, use_bias=False, rngs=rngs)
    log_dt = jax.random.uniform(rngs.params(), (e,), minval=math.log(settings.dt_min),
                                maxval=math.log(settings.dt_max))
    dt_E = jnp.exp(log_dt)
    self.dt_bias_E = nnx.Param(dt_E + jnp.log(-jnp.expm1(-dt_E)))  # softplus^-1(dt)
    self.a_log_ExN = nnx.Param(jnp.log(jnp.broadcast_to(jnp.arange(1, n + 1, dtype=jnp.float32),
                                                        (e, n))))  # S4D-real: A = -(n + 1)
    self.skip_E = nnx.Param(jnp.ones((e,), jnp.float32))
    self.out_proj = nnx.Linear(e, d, use_bias=False, rngs=rngs)

  def initial_carry(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Zero carry: (conv inputs past_Bx(k-1)xE, state h_BxExN), float32."""
    return (jnp.zeros((batch_size, self.conv_kernel - 1, self.inner), jnp.float32),
            jnp.zeros((batch_size, self.inner, self.state_size), jnp.float32))

  def scan(self, x_TxBxD: jax.Array, carry: tuple[jax.Array, jax.Array]
           ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(the block's output x_TxBxD, the carry after the last step)."""
    past, h0_BxExN = carry
    n, r = self.state_size, self.dt_proj.in_features
    dtype = self.compute_dtype
    x_in, z = jnp.split(precision.dense(self.in_proj, self.norm(x_TxBxD), dtype, dtype), 2,
                        axis=-1)
    # The carried conv inputs are float32; this chunk's are cast back to the compute dtype.
    shifted, past = shifted_inputs(x_in, past, self.conv_kernel, 1)
    past = past.astype(jnp.float32)
    taps = self.conv_KxE[...].astype(dtype)
    conv_TxBxE = sum(s * taps[j][None, None] for j, s in enumerate(shifted))
    u_TxBxE = jax.nn.silu(conv_TxBxE + self.conv_bias_E[...][None, None].astype(dtype))
    dt_r, b_TxBxN, c_TxBxN = jnp.split(precision.dense(self.x_proj, u_TxBxE, dtype),
                                       [r, r + n], axis=-1)  # float32
    delta_TxBxE = jax.nn.softplus(precision.dense(self.dt_proj, dt_r, dtype)
                                  + self.dt_bias_E[...][None, None])
    u_TxBxE = u_TxBxE.astype(jnp.float32)  # the selective scan runs in float32
    a_ExN = -jnp.exp(self.a_log_ExN[...])
    delta_a = delta_TxBxE[..., None] * a_ExN[None, None]  # TxBxExN
    a_bar = jnp.exp(delta_a)  # zero-order hold; expm1 keeps small steps exact
    b_bar_u = jnp.expm1(delta_a) / a_ExN[None, None] * b_TxBxN[:, :, None, :] * u_TxBxE[..., None]
    h_TxBxExN = linear_scan.linear_recurrence(a_bar, b_bar_u, h0_BxExN.astype(jnp.float32),
                                              self.scan_form)
    y_TxBxE = jnp.einsum("tben,tbn->tbe", h_TxBxExN, c_TxBxN) + self.skip_E[...][None, None] * u_TxBxE
    out_TxBxD = precision.dense(self.out_proj, y_TxBxE.astype(dtype) * jax.nn.silu(z), dtype)
    return x_TxBxD + out_TxBxD, (past, h_TxBxExN[-1])
