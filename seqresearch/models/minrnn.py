"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs all we needed?").

Legend:
  T time, B batch, I a layer's input width, H hidden width.

The gates read x_t only (never h_{t-1}), so the recurrence is linear in the state:
  minGRU:  z = sigmoid(W_z x),  h_t = (1 - z) h_{t-1} + z g(W_h x)
  minLSTM: f = sigmoid(W_f x), i = sigmoid(W_i x), f' = f / (f + i), i' = i / (f + i),
           h_t = f' h_{t-1} + i' g(W_h x)
with the paper's g(v) = v + 1/2 for v >= 0 and sigmoid(v) for v < 0, which keeps candidates
(and so states from a zero start) positive, so the coefficients are handled as logarithms:
log(1 - z) = -softplus(k), log z = -softplus(-k), and for minLSTM with
delta = softplus(-k_f) - softplus(-k_i): log f' = -softplus(delta), log i' = -softplus(-delta).
The associative form scans in log space (`linear_scan.log_linear_recurrence`); the sequential
one steps in linear space. Layers stack like the GRU's: Embed(E) -> H -> ... -> readout.
Mixed precision (`compute_dtype`): the input projection reads its operands in the compute
dtype and sums in float32; the log coefficients, the recurrence and the state are float32.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from seqresearch.models import linear_scan
from seqresearch.models import precision
from seqresearch.models.config import check_compute_dtype, check_positive, compute_dtype_of

MIN_CELLS = {"mingru": 2, "minlstm": 3}  # cell -> fused projections (gates + candidate)


@dataclasses.dataclass(frozen=True)
class MinRNNSettings:
  """A stack of minGRU or minLSTM layers between a token embedding and a readout.

  Attributes:
    cell: 'mingru' or 'minlstm'.
    embed_dim: width of the token embedding fed to the first layer.
    hidden_size: width of every layer's state.
    num_layers: stacked layers.
    scan: 'sequential', 'associative' (log space; same values, O(log T) depth) or 'auto'.
    compute_dtype: 'float32' or 'bfloat16': the matmul operands (input projections and
      readout, float32 sums); parameters, the log coefficients, the state, the logits, loss
      and metrics stay float32.
  """

  is_recurrent: ClassVar[bool] = True
  final_norm: ClassVar[bool] = False

  cell: Literal["mingru", "minlstm"] = "mingru"
  embed_dim: int = 64
  hidden_size: int = 128
  num_layers: int = 2
  scan: Literal["auto", "sequential", "associative"] = "auto"
  compute_dtype: Literal["float32", "bfloat16"] = "float32"

  def __post_init__(self) -> None:
    check_compute_dtype(self)
    if self.cell not in MIN_CELLS:
      raise ValueError(f"model.cell={self.cell!r}: must be one of {tuple(MIN_CELLS)}.")
    check_positive(self, "embed_dim", "hidden_size", "num_layers")
    linear_scan.check_scan(self.scan)


def log_g(v: jax.Array) -> jax.Array:
  """log g(v) for the paper's positive candidate map g (v + 1/2 above 0, sigmoid below)."""
  return jnp.where(v >= 0, jnp.log(jnp.maximum(v, 0.0) + 0.5), -jax.nn.softplus(-v))


def log_coefficients(cell: str, proj_TxBxGH: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(log a, log b) _TxBxH of h_t = a_t h_{t-1} + b_t from the fused input projection."""
  if cell == "mingru":
    k_z, v = jnp.split(proj_TxBxGH, 2, axis=-1)
    return -jax.nn.softplus(k_z), -jax.nn.softplus(-k_z) + log_g(v)
  k_f, k_i, v = jnp.split(proj_TxBxGH, 3, axis=-1)
  delta = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)  # log(i / f)
  return -jax.nn.softplus(delta), -jax.nn.softplus(-delta) + log_g(v)


class MinRNNLayer(nnx.Module):
  """One minGRU/minLSTM layer, time-major; the `recurrent.ScanLayer` interface."""

  def __init__(self, settings: MinRNNSettings, in_features: int, layer_index: int = 0, *,
               rngs: nnx.Rngs):
    del layer_index
    self.cell = settings.cell
    self.out_features = settings.hidden_size
    self.scan_form = linear_scan.resolve_scan(settings.scan)
    self.compute_dtype = compute_dtype_of(settings).name
    self.input_proj = nnx.Linear(in_features, MIN_CELLS[settings.cell] * settings.hidden_size,
                                 rngs=rngs)

  def initial_carry(self, batch_size: int) -> jax.Array:
    """Zero state h_BxH (float32)."""
    return jnp.zeros((batch_size, self.out_features), jnp.float32)

  def scan(self, x_TxBxI: jax.Array, carry: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(h_TxBxH after every step, h_BxH after the last)."""
    proj_TxBxGH = precision.dense(self.input_proj, x_TxBxI, self.compute_dtype)  # float32
    log_a, log_b = log_coefficients(self.cell, proj_TxBxGH)
    h_TxBxH = linear_scan.log_linear_recurrence(log_a, log_b, carry.astype(jnp.float32),
                                                self.scan_form)
    return h_TxBxH, h_TxBxH[-1]
