"""Recurrent cells: the gate maths of the Elman RNN, the LSTM and the GRU, written once.

Legend:
  B batch, I a cell's input width, H hidden (state) width, G number of fused gates
  (rnn 1, lstm 4, gru 3), R number of residuals a step keeps for its backward pass.

Each cell owns one input projection `Linear(I, G*H)` (holding the bias) and one recurrent
projection `Linear(H, G*H, use_bias=False)`, so a step is two matmuls whatever the cell.
The gate blocks along the G*H axis are, in order: rnn (candidate), lstm (i, f, g, o) as in
Flax's `nnx.LSTMCell`, gru (r, z, n) as in Flax's `nnx.GRUCell`. Carries are float32.

Mixed precision (`compute_dtype`): the two projections read their operands in the compute
dtype (float32 weights cast at use) and sum their products in float32; the gate maths, the
carry and the residuals of the batched VJP stay float32.

A cell's gate maths is its `pointwise_fwd` (the step after the two matmuls, returning the
residuals too); `pointwise` is the same function with the residuals dropped (XLA removes
their computation), and `pointwise_bwd` its hand-written pullback for the batched VJP in
`seqresearch.models.scans`. `CELLS` is the one map from a cell name to its class.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqresearch.models import precision

# LSTM carry is (c, h); rnn and gru carry h.
Carry = Any


def _gatewise_orthogonal(num_gates: int) -> nnx.Initializer:
  """Initialiser for a fused recurrent kernel HxGH: one orthogonal HxH block per gate.

  A single orthogonal HxGH matrix would shrink each gate's block by ~sqrt(G); per-gate
  blocks keep every gate's recurrent map norm-preserving at init, as Flax's cells do.
  """
  orthogonal = nnx.initializers.orthogonal()

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    in_features, out_features = shape
    keys = jax.random.split(key, num_gates)
    blocks = [orthogonal(k, (in_features, out_features // num_gates), dtype) for k in keys]
    return jnp.concatenate(blocks, axis=1)

  return init


class RecurrentCell(nnx.Module):
  """Shared parameters and plumbing of the three cells; subclasses define `pointwise_fwd`.

  A step is `pointwise(extra, carry, xg_G, hg_G)`: everything after the two matmuls, as a
  pure function of arrays (so a layer can scan it, hoist the input projection out of the
  scan, or differentiate it by hand). xg_G / hg_G are tuples of G gate blocks BxH of the
  input projection (with bias) and the recurrent projection of `hidden(carry)`. `step` is
  the same from the fused xg_BxGH, and `__call__(carry, x_BxI)` one plain step from the input.
  """

  num_gates: int = 1
  # Hand-written derivative of `pointwise` for weight_grads="batched": which of the gate
  # gradients `pointwise_bwd` returns are d xg_G and d hg_G (they differ only in gru's n).
  xg_slots: tuple[int, ...] = (0,)
  hg_slots: tuple[int, ...] = (0,)

  def __init__(self, in_features: int, hidden_size: int, *, rngs: nnx.Rngs,
               compute_dtype: str = "float32"):
    self.hidden_size = hidden_size
    self.compute_dtype = compute_dtype  # the matmuls' operand dtype (see the module doc)
    g = self.num_gates
    self.input_proj = nnx.Linear(in_features, g * hidden_size, rngs=rngs)
    self.recurrent_proj = nnx.Linear(
        hidden_size, g * hidden_size, use_bias=False,
        kernel_init=_gatewise_orthogonal(g), rngs=rngs)

  def initial_carry(self, batch_size: int) -> Carry:
    """Zero carry: h_BxH (float32)."""
    return jnp.zeros((batch_size, self.hidden_size), jnp.float32)

  def project_input(self, x: jax.Array) -> jax.Array:
    """Input projection with bias: x_BxI -> xg_BxGH, or x_TxBxI -> xg_TxBxGH when hoisted
    (float32; operands in the compute dtype)."""
    return precision.dense(self.input_proj, x, self.compute_dtype)

  def extra_params(self) -> Any:
    """Parameters `pointwise` needs besides the two projections (a pytree; () for none)."""
    return ()

  @staticmethod
  def hidden(carry: Carry) -> jax.Array:
    """The part of the carry the recurrent projection reads, h_BxH."""
    return carry

  @classmethod
  def pointwise(cls, extra: Any, carry: Carry, xg_G: tuple[jax.Array, ...],
                hg_G: tuple[jax.Array, ...]) -> tuple[Carry, jax.Array]:
    """The gates. Returns (new carry, h_BxH) with h_BxH == hidden(new carry).

    `pointwise_fwd` without its residuals: the gate maths lives there only.
    """
    carry, h_BxH, _ = cls.pointwise_fwd(extra, carry, xg_G, hg_G)
    return carry, h_BxH

  @staticmethod
  def pointwise_fwd(extra: Any, carry: Carry, xg_G: tuple[jax.Array, ...],
                    hg_G: tuple[jax.Array, ...]
                    ) -> tuple[Carry, jax.Array, tuple[jax.Array, ...]]:
    """The gate maths. Returns (new carry, h_BxH, residuals: R >= G arrays BxH that
    `pointwise_bwd` needs), h_BxH == hidden(new carry)."""
    raise NotImplementedError

  @staticmethod
  def pointwise_bwd(extra: Any, res_R: tuple[jax.Array, ...], h_prev_BxH: jax.Array,
                    dcarry: Carry, dh_BxH: jax.Array
                    ) -> tuple[Any, Carry, tuple[jax.Array, ...]]:
    """Pullback of `pointwise` from its residuals and the state it read.

    Args:
      extra: as for `pointwise`. res_R: `pointwise_fwd`'s residuals. h_prev_BxH: the
        hidden state the step read. dcarry: cotangent of the new carry. dh_BxH: cotangent
        of the step's output h.

    Returns:
      (d extra, d previous carry except through hg, gate gradients dz_BxH...): d xg_G and
      d hg_G are the gate gradients at `xg_slots` and `hg_slots`.
    """
    raise NotImplementedError

  def step(self, carry: Carry, xg_BxGH: jax.Array) -> tuple[Carry, jax.Array]:
    """One time step from the projected input. Returns (new carry, h_BxH)."""
    g = self.num_gates
    xg_G = tuple(jnp.split(xg_BxGH.astype(jnp.float32), g, axis=-1))
    hg_BxGH = precision.matmul(self.hidden(carry), self.recurrent_proj.kernel[...],
                               self.compute_dtype)
    hg_G = tuple(jnp.split(hg_BxGH, g, axis=-1))
    return self.pointwise(self.extra_params(), carry, xg_G, hg_G)

  def __call__(self, carry: Carry, x_BxI: jax.Array) -> tuple[Carry, jax.Array]:
    """One time step from the raw input x_BxI. Returns (new carry, h_BxH)."""
    return self.step(carry, self.project_input(x_BxI))


class ElmanCell(RecurrentCell):
  """Elman RNN: h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)."""

  num_gates = 1

  @staticmethod
  def pointwise_fwd(extra, h_BxH, xg_G, hg_G):
    """Args: h_BxH previous state, (xg_BxH,), (hg_BxH,). Returns (h, h, (h,))."""
    del extra
    h_BxH = jnp.tanh(xg_G[0] + hg_G[0])
    return h_BxH, h_BxH, (h_BxH,)

  @staticmethod
  def pointwise_bwd(extra, res_R, h_prev_BxH, dcarry, dh_BxH):
    del extra, h_prev_BxH
    (h_BxH,) = res_R
    dz_BxH = (dcarry + dh_BxH) * (1.0 - h_BxH * h_BxH)
    return (), jnp.zeros_like(dcarry), (dz_BxH,)


class LSTMCell(RecurrentCell):
  """LSTM (no peepholes): gates i, f, g, o; c_t = f*c + i*g, h_t = o*tanh(c_t).

  The forget bias lives in `input_proj.bias[H:2H]`; `RecurrentLayer` sets it at init.
  """

  num_gates = 4
  xg_slots = hg_slots = (0, 1, 2, 3)

  def initial_carry(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Zero carry (c_BxH, h_BxH), float32."""
    zeros_BxH = jnp.zeros((batch_size, self.hidden_size), jnp.float32)
    return zeros_BxH, zeros_BxH

  @staticmethod
  def hidden(carry: tuple[jax.Array, jax.Array]) -> jax.Array:
    return carry[1]

  @staticmethod
  def pointwise_fwd(extra, carry, xg_G, hg_G):
    """Args: carry (c_BxH, h_BxH), 4 gate blocks each. Returns ((c, h), h_BxH, residuals):
    the four gate activations and c_prev."""
    del extra
    c_prev_BxH = carry[0]
    i_BxH, f_BxH, g_BxH, o_BxH = (x + h for x, h in zip(xg_G, hg_G, strict=True))
    a_i, a_f, a_g, a_o = (jax.nn.sigmoid(i_BxH), jax.nn.sigmoid(f_BxH), jnp.tanh(g_BxH),
                          jax.nn.sigmoid(o_BxH))
    c_BxH = a_f * c_prev_BxH + a_i * a_g
    h_BxH = a_o * jnp.tanh(c_BxH)
    return (c_BxH, h_BxH), h_BxH, (a_i, a_f, a_g, a_o, c_prev_BxH)

  @staticmethod
  def pointwise_bwd(extra, res_R, h_prev_BxH, dcarry, dh_BxH):
    del extra, h_prev_BxH
    a_i, a_f, a_g, a_o, c_prev_BxH = res_R
    dc_BxH, dh_carry_BxH = dcarry
    dh_BxH = dh_BxH + dh_carry_BxH
    tanh_c = jnp.tanh(a_f * c_prev_BxH + a_i * a_g)  # recomputed: cheaper than storing
    dc_BxH = dc_BxH + dh_BxH * a_o * (1.0 - tanh_c * tanh_c)
    dz_G = (dc_BxH * a_g * a_i * (1.0 - a_i), dc_BxH * c_prev_BxH * a_f * (1.0 - a_f),
            dc_BxH * a_i * (1.0 - a_g * a_g), dh_BxH * tanh_c * a_o * (1.0 - a_o))
    return (), (dc_BxH * a_f, jnp.zeros_like(dh_BxH)), dz_G

  def init_gate_biases(self, *, forget_bias: float, lstm_init: str, chrono_max_len: int,
                       key: jax.Array) -> None:
    """Sets the input and forget gate biases (the other gates' biases stay zero).

    Args:
      forget_bias: constant forget bias for lstm_init='default'.
      lstm_init: 'default' or 'chrono' (Tallec & Ollivier 2018): b_f ~ log(U[1, T_max - 1]),
        b_i = -b_f, so the gates start with characteristic times spread up to T_max.
      chrono_max_len: T_max of chrono init.
      key: PRNG key for chrono init.
    """
    hid = self.hidden_size
    bias_4H = self.input_proj.bias[...]
    if lstm_init == "chrono":
      u_H = jax.random.uniform(key, (hid,), jnp.float32, 1.0, chrono_max_len - 1.0)
      b_f_H = jnp.log(u_H)
      bias_4H = bias_4H.at[:hid].set(-b_f_H).at[hid:2 * hid].set(b_f_H)
    else:
      bias_4H = bias_4H.at[hid:2 * hid].set(forget_bias)
    self.input_proj.bias[...] = bias_4H


class GRUCell(RecurrentCell):
  """GRU (Cho et al. 2014) in the PyTorch/Flax form, reset gate applied after W_hn:

    r = sigmoid(W_ir x + b_r + W_hr h),  z = sigmoid(W_iz x + b_z + W_hz h)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h

  This is exactly PyTorch's `nn.GRU` (its redundant b_hr, b_hz are folded into b_r, b_z)
  and exactly Flax's `nnx.GRUCell` when b_hn = 0 (Flax has no b_hn; ours starts at 0).
  """

  num_gates = 3
  # The candidate's recurrent part is gated by r: d hg_n = d z_n * r differs from d xg_n.
  xg_slots, hg_slots = (0, 1, 2), (0, 1, 3)

  def __init__(self, in_features: int, hidden_size: int, *, rngs: nnx.Rngs,
               compute_dtype: str = "float32"):
    super().__init__(in_features, hidden_size, rngs=rngs, compute_dtype=compute_dtype)
    # b_hn sits inside the reset gate, so it cannot be folded into the input bias.
    self.candidate_bias = nnx.Param(jnp.zeros((hidden_size,), jnp.float32))

  def extra_params(self) -> jax.Array:
    return self.candidate_bias[...]

  @staticmethod
  def pointwise_fwd(b_hn_H, h_BxH, xg_G, hg_G):
    """Args: b_hn_H, h_BxH previous state, (r, z, n) blocks each. Returns (h, h, residuals):
    r, z, n and hn + b_hn."""
    r_BxH = jax.nn.sigmoid(xg_G[0] + hg_G[0])
    z_BxH = jax.nn.sigmoid(xg_G[1] + hg_G[1])
    hnb_BxH = hg_G[2] + b_hn_H[None]
    n_BxH = jnp.tanh(xg_G[2] + r_BxH * hnb_BxH)
    h_BxH = (1.0 - z_BxH) * n_BxH + z_BxH * h_BxH
    return h_BxH, h_BxH, (r_BxH, z_BxH, n_BxH, hnb_BxH)

  @staticmethod
  def pointwise_bwd(b_hn_H, res_R, h_prev_BxH, dcarry, dh_BxH):
    del b_hn_H
    r_BxH, z_BxH, n_BxH, hnb_BxH = res_R
    dh_BxH = dh_BxH + dcarry
    dn_BxH = dh_BxH * (1.0 - z_BxH) * (1.0 - n_BxH * n_BxH)  # through tanh
    dr_BxH = dn_BxH * hnb_BxH
    dhn_BxH = dn_BxH * r_BxH
    dz_G = (dr_BxH * r_BxH * (1.0 - r_BxH),
            dh_BxH * (h_prev_BxH - n_BxH) * z_BxH * (1.0 - z_BxH), dn_BxH, dhn_BxH)
    return dhn_BxH.sum(0), dh_BxH * z_BxH, dz_G


CELLS: Mapping[str, type[RecurrentCell]] = MappingProxyType(
    {"rnn": ElmanCell, "lstm": LSTMCell, "gru": GRUCell})
