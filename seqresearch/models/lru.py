"""Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting recurrent neural networks").

Legend:
  T time, B batch, D model width, N complex state width.

Per channel n the state is complex and diagonal:
  x_t = lambda * x_{t-1} + gamma * (B u_t),   y_t = Re(C x_t) + D_skip * u_t,
with lambda = exp(-exp(nu_log) + i exp(theta_log)) (|lambda| < 1 for every parameter value),
initialised uniformly on the ring r_min <= |lambda| <= r_max with phase in [0, max_phase]
(their Lemma 2: nu_log = log(-log r) with r^2 uniform), and gamma = sqrt(1 - |lambda|^2)
(their normalisation, stored as gamma_log) so that white-noise input keeps unit state
variance at init. B and C are complex Gaussians (variance 1/D and 1/N, half in each part).
The block is the paper's: x + GLU(GELU(LRU(LayerNorm(x)))) with GLU(y) = W1 y * sigmoid(W2 y).
The recurrence is linear, so it runs as a sequential or an associative scan
(`linear_scan.linear_recurrence`, setting `scan`).

Mixed precision (`compute_dtype`): the projections B u, C x and the GLU's read their
operands in the compute dtype and sum in float32; GELU and the GLU gate run in the compute
dtype; the complex state (complex64), lambda, gamma, the LayerNorm and the residual stream
(float32, like Mamba's `residual_in_fp32`) do not.
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


@dataclasses.dataclass(frozen=True)
class LRUSettings:
  """A stack of LRU blocks between a token embedding and a readout.

  Attributes:
    d_model: D, the width of the residual stream (and the embedding).
    state_size: N, complex state channels per layer.
    num_layers: stacked blocks.
    r_min, r_max: the ring |lambda| is drawn from at init, 0 <= r_min < r_max < 1.
    max_phase: arg(lambda) is drawn from [0, max_phase] at init (radians, <= 2 pi).
    scan: 'sequential', 'associative' (same values; O(T) vs O(log T) depth) or 'auto'
      (`linear_scan.SCAN_AUTO` for the backend).
    compute_dtype: 'float32' or 'bfloat16': the matmul operands (B, C, GLU, readout; float32
      sums) and the GELU/GLU activations; parameters, the complex64 state, LayerNorm, the
      residual stream, the logits, loss and metrics stay float32.
  """

  is_recurrent: ClassVar[bool] = True
  final_norm: ClassVar[bool] = True

  d_model: int = 64
  state_size: int = 64
  num_layers: int = 2
  r_min: float = 0.0
  r_max: float = 0.99
  max_phase: float = 2 * math.pi
  scan: Literal["auto", "sequential", "associative"] = "auto"
  compute_dtype: Literal["float32", "bfloat16"] = "float32"

  def __post_init__(self) -> None:
    check_compute_dtype(self)
    check_positive(self, "d_model", "state_size", "num_layers")
    for name in ("r_min", "r_max", "max_phase"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"model.{name}={value!r}: must be a finite number.")
    if not 0.0 <= self.r_min < self.r_max < 1.0:
      raise ValueError(f"model.r_min={self.r_min!r}, model.r_max={self.r_max!r}: must satisfy "
                       "0 <= r_min < r_max < 1.")
    if not 0.0 < self.max_phase <= 2 * math.pi:
      raise ValueError(f"model.max_phase={self.max_phase!r}: must be in (0, 2 pi].")
    linear_scan.check_scan(self.scan)

  @property
  def embed_dim(self) -> int:
    return self.d_model


def ring_init(key: jax.Array, n: int, r_min: float, r_max: float, max_phase: float
              ) -> tuple[jax.Array, jax.Array]:
  """(nu_log_N, theta_log_N) with |lambda| uniform on the ring [r_min, r_max] by area.

  |lambda| = exp(-exp(nu_log)) = r with r^2 ~ U[r_min^2, r_max^2]; arg = theta ~ U[0, max_phase].
  """
  k_r, k_theta = jax.random.split(key)
  u_r, u_theta = jax.random.uniform(k_r, (n,)), jax.random.uniform(k_theta, (n,))
  nu_log = jnp.log(-0.5 * jnp.log(u_r * (r_max ** 2 - r_min ** 2) + r_min ** 2))
  theta_log = jnp.log(jnp.maximum(max_phase * u_theta, 1e-12))  # log 0 would be -inf
  return nu_log, theta_log


class LRULayer(nnx.Module):
  """x + GLU(GELU(LRU(LN(x)))), time-major; the `recurrent.ScanLayer` interface."""

  def __init__(self, settings: LRUSettings, in_features: int, layer_index: int = 0, *,
               rngs: nnx.Rngs):
    del layer_index
    d, n = settings.d_model, settings.state_size
    if in_features != d:
      raise ValueError(f"LRU layer input width {in_features} != model.d_model={d}.")
    self.out_features, self.state_size = d, n
    self.scan_form = linear_scan.resolve_scan(settings.scan)
    self.compute_dtype = compute_dtype_of(settings).name
    self.norm = nnx.LayerNorm(d, rngs=rngs)
    nu_log, theta_log = ring_init(rngs.params(), n, settings.r_min, settings.r_max,
                                  settings.max_phase)
    self.nu_log_N, self.theta_log_N = nnx.Param(nu_log), nnx.Param(theta_log)
    self.gamma_log_N = nnx.Param(0.5 * jnp.log(1.0 - jnp.exp(-2.0 * jnp.exp(nu_log))))
    def normal(shape: tuple[int, int], var: float) -> nnx.Param:
      return nnx.Param(jax.random.normal(rngs.params(), shape) * math.sqrt(var))

    self.b_re_DxN, self.b_im_DxN = normal((d, n), 0.5 / d), normal((d, n), 0.5 / d)
    self.c_re_NxD, self.c_im_NxD = normal((n, d), 0.5 / n), normal((n, d), 0.5 / n)
    self.skip_D = nnx.Param(jax.random.normal(rngs.params(), (d,)))
    self.glu_in = nnx.Linear(d, 2 * d, rngs=rngs)

  def lam(self) -> jax.Array:
    """The eigenvalues lambda_N (complex64), |lambda| < 1."""
    return jnp.exp(-jnp.exp(self.nu_log_N[...]) + 1j * jnp.exp(self.theta_log_N[...]))

  def initial_carry(self, batch_size: int) -> jax.Array:
    """Zero state x_BxN (complex64)."""
    return jnp.zeros((batch_size, self.state_size), jnp.complex64)

  def recurrence(self, u_TxBxD: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The LRU alone: (y_TxBxD = Re(C x) + D u float32, final state x_BxN complex64)."""
    u = u_TxBxD.astype(jnp.float32)
    dtype = self.compute_dtype
    gamma_N = jnp.exp(self.gamma_log_N[...])
    bu = (precision.matmul(u, self.b_re_DxN[...], dtype)
          + 1j * precision.matmul(u, self.b_im_DxN[...], dtype)) * gamma_N[None, None]
    x_TxBxN = linear_scan.linear_recurrence(self.lam()[None, None], bu, carry, self.scan_form)
    y = (precision.matmul(x_TxBxN.real, self.c_re_NxD[...], dtype)
         - precision.matmul(x_TxBxN.imag, self.c_im_NxD[...], dtype))
    return y + self.skip_D[...][None, None] * u, x_TxBxN[-1]

  def scan(self, x_TxBxD: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(the block's output x_TxBxD, the LRU state after the last step)."""
    y_TxBxD, carry = self.recurrence(self.norm(x_TxBxD), carry.astype(jnp.complex64))
    dtype = self.compute_dtype
    glu_TxBx2D = precision.dense(self.glu_in, jax.nn.gelu(y_TxBxD.astype(dtype)), dtype, dtype)
    a, g = jnp.split(glu_TxBx2D, 2, axis=-1)
    return x_TxBxD + (a * jax.nn.sigmoid(g)).astype(jnp.float32), carry
