"""Recurrent language models: fused-gate cells scanned over time with `jax.lax.scan`.

Legend:
  B batch, T time, V vocabulary, E embedding width, I a layer's input width,
  H hidden (state) width, G number of fused gates (rnn 1, lstm 4, gru 3).

Each cell owns one input projection `Linear(I, G*H)` (holding the bias) and one recurrent
projection `Linear(H, G*H, use_bias=False)`, so a step is two matmuls whatever the cell.
The gate blocks along the G*H axis are, in order: rnn (candidate), lstm (i, f, g, o) as in
Flax's `nnx.LSTMCell`, gru (r, z, n) as in Flax's `nnx.GRUCell`. Carries are float32.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from seqresearch.models.config import RecurrentSettings

# LSTM carry is (c, h); rnn and gru carry h. A model state is a tuple of one carry per layer.
Carry = Any
State = tuple[Carry, ...]


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
  """Shared parameters and plumbing of the three cells; subclasses define `pointwise`.

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

  def __init__(self, in_features: int, hidden_size: int, *, rngs: nnx.Rngs):
    self.hidden_size = hidden_size
    g = self.num_gates
    self.input_proj = nnx.Linear(in_features, g * hidden_size, rngs=rngs)
    self.recurrent_proj = nnx.Linear(
        hidden_size, g * hidden_size, use_bias=False,
        kernel_init=_gatewise_orthogonal(g), rngs=rngs)

  def initial_carry(self, batch_size: int) -> Carry:
    """Zero carry: h_BxH (float32)."""
    return jnp.zeros((batch_size, self.hidden_size), jnp.float32)

  def project_input(self, x: jax.Array) -> jax.Array:
    """Input projection with bias: x_BxI -> xg_BxGH, or x_TxBxI -> xg_TxBxGH when hoisted."""
    return self.input_proj(x)

  def extra_params(self) -> Any:
    """Parameters `pointwise` needs besides the two projections (a pytree; () for none)."""
    return ()

  @staticmethod
  def hidden(carry: Carry) -> jax.Array:
    """The part of the carry the recurrent projection reads, h_BxH."""
    return carry

  @staticmethod
  def pointwise(extra: Any, carry: Carry, xg_G: tuple[jax.Array, ...],
                hg_G: tuple[jax.Array, ...]) -> tuple[Carry, jax.Array]:
    """The gates. Returns (new carry, h_BxH) with h_BxH == hidden(new carry)."""
    raise NotImplementedError

  @staticmethod
  def pointwise_fwd(extra: Any, carry: Carry, xg_G: tuple[jax.Array, ...],
                    hg_G: tuple[jax.Array, ...]
                    ) -> tuple[Carry, jax.Array, tuple[jax.Array, ...]]:
    """`pointwise` that also returns the residuals its backward needs: R >= G arrays BxH."""
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
    hg_G = tuple(jnp.split(self.recurrent_proj(self.hidden(carry)), g, axis=-1))
    return self.pointwise(self.extra_params(), carry, xg_G, hg_G)

  def __call__(self, carry: Carry, x_BxI: jax.Array) -> tuple[Carry, jax.Array]:
    """One time step from the raw input x_BxI. Returns (new carry, h_BxH)."""
    return self.step(carry, self.project_input(x_BxI))


class ElmanCell(RecurrentCell):
  """Elman RNN: h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)."""

  num_gates = 1

  @staticmethod
  def pointwise(extra: Any, h_BxH: jax.Array, xg_G: tuple[jax.Array, ...],
                hg_G: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
    """Args: h_BxH previous state, (xg_BxH,), (hg_BxH,). Returns (h_BxH, h_BxH)."""
    del extra, h_BxH
    h_BxH = jnp.tanh(xg_G[0] + hg_G[0])
    return h_BxH, h_BxH

  @staticmethod
  def pointwise_fwd(extra, h_BxH, xg_G, hg_G):
    h_BxH, _ = ElmanCell.pointwise(extra, h_BxH, xg_G, hg_G)
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
  def pointwise(extra: Any, carry: tuple[jax.Array, jax.Array], xg_G: tuple[jax.Array, ...],
                hg_G: tuple[jax.Array, ...]) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    """Args: carry (c_BxH, h_BxH), 4 gate blocks each. Returns ((c, h), h_BxH)."""
    del extra
    c_BxH = carry[0]
    i_BxH, f_BxH, g_BxH, o_BxH = (x + h for x, h in zip(xg_G, hg_G, strict=True))
    c_BxH = jax.nn.sigmoid(f_BxH) * c_BxH + jax.nn.sigmoid(i_BxH) * jnp.tanh(g_BxH)
    h_BxH = jax.nn.sigmoid(o_BxH) * jnp.tanh(c_BxH)
    return (c_BxH, h_BxH), h_BxH

  @staticmethod
  def pointwise_fwd(extra, carry, xg_G, hg_G):
    """Residuals: the four gate activations and c_prev (the same ops as `pointwise`)."""
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

  def __init__(self, in_features: int, hidden_size: int, *, rngs: nnx.Rngs):
    super().__init__(in_features, hidden_size, rngs=rngs)
    # b_hn sits inside the reset gate, so it cannot be folded into the input bias.
    self.candidate_bias = nnx.Param(jnp.zeros((hidden_size,), jnp.float32))

  def extra_params(self) -> jax.Array:
    return self.candidate_bias[...]

  @staticmethod
  def pointwise(b_hn_H: jax.Array, h_BxH: jax.Array, xg_G: tuple[jax.Array, ...],
                hg_G: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
    """Args: b_hn_H, h_BxH previous state, (r, z, n) blocks each. Returns (h_BxH, h_BxH)."""
    xr_BxH, xz_BxH, xn_BxH = xg_G
    hr_BxH, hz_BxH, hn_BxH = hg_G
    r_BxH = jax.nn.sigmoid(xr_BxH + hr_BxH)
    z_BxH = jax.nn.sigmoid(xz_BxH + hz_BxH)
    n_BxH = jnp.tanh(xn_BxH + r_BxH * (hn_BxH + b_hn_H))
    h_BxH = (1.0 - z_BxH) * n_BxH + z_BxH * h_BxH
    return h_BxH, h_BxH

  @staticmethod
  def pointwise_fwd(b_hn_H, h_BxH, xg_G, hg_G):
    """Residuals: r, z, n and hn + b_hn (the same ops as `pointwise`)."""
    r_BxH = jax.nn.sigmoid(xg_G[0] + hg_G[0])
    z_BxH = jax.nn.sigmoid(xg_G[1] + hg_G[1])
    hnb_BxH = hg_G[2] + b_hn_H
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


def make_cell(cell: str, in_features: int, hidden_size: int, *, rngs: nnx.Rngs) -> RecurrentCell:
  """The one place that maps a cell name to its class."""
  if cell == "rnn":
    return ElmanCell(in_features, hidden_size, rngs=rngs)
  if cell == "lstm":
    return LSTMCell(in_features, hidden_size, rngs=rngs)
  if cell == "gru":
    return GRUCell(in_features, hidden_size, rngs=rngs)
  raise ValueError(f"model.cell={cell!r}: must be one of ('rnn', 'lstm', 'gru').")


# ---------------------------------------------------------------- the scanned layer
#
# Two forms of one computation. "autodiff": `jax.lax.scan` over the step, differentiated by
# JAX, whose backward scan accumulates the weight gradients step by step (T small
# BxH^T @ BxGH matmuls plus T additions into an HxGH accumulator). "batched": the same forward
# under a custom VJP whose backward loop only carries the state gradient and keeps the gate
# gradients (d hg as one TxBxGH array); the weight gradients are then (T*B)-deep matmuls,
# near the matmul roof.
#
# Why it is written the way it is (measured on XLA:CPU, see benchmarks/):
# * Memory is time: with glibc's default malloc, XLA:CPU takes its temporaries from fresh
#   pages on every call, so each MB of peak memory costs a page-fault pass (~0.3 ms/MB here;
#   `host_memory` removes most of it, and the runner turns it on for CPU). The batched form keeps only the
#   residuals its hand-written pullback needs (lstm 5, gru 4, rnn 1 arrays TxBxH, against
#   about twice that for autodiff); for the same reason hoisting the input projection (G more
#   TxBxH arrays) is slower on CPU than one small matmul per step. Writing residuals and
#   gradients in place over dead buffers (a loop-carried buffer read and updated at step t)
#   was tried: XLA then copies the whole buffers every step, so the loops use scan outputs.
# * Layout: the per-step slice of one stacked TxBxGH array, split into gates inside an
#   elementwise fusion, compiles to slow code (10x slower than reading whole arrays), so
#   every stacked array the forward writes for the backward is one gate's TxBxH. The
#   backward's d hg is written whole (it is the recurrent matmul's BxGH operand anyway) and
#   only read after the loop, by the weight-gradient matmuls.


class _ScanParams(NamedTuple):
  """The arrays a layer's scan reads: w_ih_IxGH, b_GH, w_hh_HxGH and the cell's extras."""

  w_ih: jax.Array
  b: jax.Array
  w_hh: jax.Array
  extra: Any


def _gates(a_BxGH: jax.Array, num_gates: int) -> tuple[jax.Array, ...]:
  return tuple(jnp.split(a_BxGH, num_gates, axis=-1))


def _hoisted_projection(p: _ScanParams, x_TxBxI: jax.Array, num_gates: int,
                        bias: bool) -> tuple[jax.Array, ...]:
  """The input projection of every step as G separate xg_TxBxH arrays."""
  w_IxGxH = p.w_ih.reshape(p.w_ih.shape[0], num_gates, -1)
  b_GxH = p.b.reshape(num_gates, -1)
  return tuple((x_TxBxI @ w_IxGxH[:, k] + (b_GxH[k] if bias else 0.0)).astype(jnp.float32)
               for k in range(num_gates))


def _scan_autodiff(cell: type[RecurrentCell], hoist: bool, unroll: int, p: _ScanParams,
                   carry: Carry, x_TxBxI: jax.Array) -> tuple[jax.Array, Carry]:
  """The reference form: a plain scan, differentiated by JAX. Returns (y_TxBxH, carry)."""
  g = cell.num_gates

  def body(carry: Carry, x_t: Any) -> tuple[Carry, jax.Array]:
    xg_G = x_t if hoist else _gates((x_t @ p.w_ih + p.b).astype(jnp.float32), g)
    return cell.pointwise(p.extra, carry, xg_G, _gates(cell.hidden(carry) @ p.w_hh, g))

  xs = _hoisted_projection(p, x_TxBxI, g, bias=True) if hoist else x_TxBxI
  carry, y_TxBxH = jax.lax.scan(body, carry, xs, unroll=unroll)
  return y_TxBxH, carry


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _scan_batched(cell: type[RecurrentCell], hoist: bool, unroll: int, p: _ScanParams,
                  carry: Carry, x_TxBxI: jax.Array) -> tuple[jax.Array, Carry]:
  """Same value as `_scan_autodiff`; its gradient is `_scan_batched_bwd`."""
  return _scan_autodiff(cell, hoist, unroll, p, carry, x_TxBxI)


def _scan_batched_fwd(cell: type[RecurrentCell], hoist: bool, unroll: int, p: _ScanParams,
                      carry0: Carry, x_TxBxI: jax.Array) -> tuple[tuple[jax.Array, Carry], Any]:
  g = cell.num_gates
  b_GxH = p.b.reshape(g, -1)

  def body(carry: Carry, x_t: Any) -> tuple[Carry, Any]:
    if hoist:  # the bias is added here, in the step's elementwise fusion: one pass less
      xg_G = tuple(x + b_GxH[k] for k, x in enumerate(x_t))
    else:
      xg_G = _gates((x_t @ p.w_ih + p.b).astype(jnp.float32), g)
    hg_G = _gates(cell.hidden(carry) @ p.w_hh, g)
    carry, h_BxH, res_t = cell.pointwise_fwd(p.extra, carry, xg_G, hg_G)
    return carry, (h_BxH, res_t)

  xs = _hoisted_projection(p, x_TxBxI, g, bias=False) if hoist else x_TxBxI
  carry, (y_TxBxH, res_R) = jax.lax.scan(body, carry0, xs, unroll=unroll)
  return (y_TxBxH, carry), (p, carry0, x_TxBxI, y_TxBxH, res_R)


def _scan_batched_bwd(cell: type[RecurrentCell], hoist: bool, unroll: int, residuals: Any,
                      cotangents: tuple[jax.Array, Carry]) -> tuple[_ScanParams, Carry, jax.Array]:
  del hoist  # the input projection's gradient is the same wherever it ran
  p, carry0, x_TxBxI, y_TxBxH, res_R = residuals
  dy_TxBxH, dcarry = cotangents
  t_len, b, i = x_TxBxI.shape
  # The state each step read: h_{t-1} = y_{t-1}, and the initial carry's h for t = 0.
  hprev_TxBxH = jnp.concatenate([cell.hidden(carry0)[None], y_TxBxH[:-1]], axis=0)
  # hidden() only selects from the carry, so its pullback routes dh into the carry cotangent.
  _, hidden_pullback = jax.vjp(cell.hidden, carry0)
  w_hh_GHxH = p.w_hh.T

  # Which gate gradients leave the loop: all of d hg as one BxGH array (the matmul's operand
  # anyway: one stacked write per step instead of G), and the d xg blocks that differ from
  # their d hg block (gru's n) separately.
  if not len(cell.xg_slots) == len(cell.hg_slots) == cell.num_gates:
    raise ValueError(f"{cell.__name__}: xg_slots and hg_slots must name {cell.num_gates} "
                     "gate gradients each.")
  xg_only = [k for k in range(cell.num_gates) if cell.xg_slots[k] != cell.hg_slots[k]]

  def body(acc: tuple[Carry, Any], step_in: Any) -> tuple[tuple[Carry, Any], Any]:
    dcarry, dextra = acc
    res_t, h_prev_BxH, dy_BxH = step_in
    dextra_t, dcarry_prev, dz = cell.pointwise_bwd(p.extra, res_t, h_prev_BxH, dcarry, dy_BxH)
    dhg_BxGH = jnp.concatenate([dz[k] for k in cell.hg_slots], axis=-1)
    (dcarry_h,) = hidden_pullback(dhg_BxGH @ w_hh_GHxH)
    dcarry_prev = jax.tree.map(jnp.add, dcarry_prev, dcarry_h)
    out = (dhg_BxGH, tuple(dz[cell.xg_slots[k]] for k in xg_only))
    return (dcarry_prev, jax.tree.map(jnp.add, dextra, dextra_t)), out

  dextra0 = jax.tree.map(jnp.zeros_like, p.extra)
  (dcarry0, dextra), (dhg_TxBxGH, dxg_only) = jax.lax.scan(
      body, (dcarry, dextra0), (res_R, hprev_TxBxH, dy_TxBxH), reverse=True, unroll=unroll)
  n, h = t_len * b, hprev_TxBxH.shape[-1]  # the weight gradients: (T*B)-deep matmuls
  x_NxI = x_TxBxI.reshape(n, i).astype(jnp.float32)
  dhg_NxGH = dhg_TxBxGH.reshape(n, -1)
  if xg_only:  # d xg: d hg with the differing blocks swapped in (once, after the loop)
    blocks = [dhg_NxGH[:, k * h:(k + 1) * h] for k in range(cell.num_gates)]
    for k, d_TxBxH in zip(xg_only, dxg_only, strict=True):
      blocks[k] = d_TxBxH.reshape(n, h)
    dxg_NxGH = jnp.concatenate(blocks, axis=-1)
  else:
    dxg_NxGH = dhg_NxGH
  grads = _ScanParams(
      w_ih=(x_NxI.T @ dxg_NxGH).astype(p.w_ih.dtype),
      b=dxg_NxGH.sum(0).astype(p.b.dtype),
      w_hh=(hprev_TxBxH.reshape(n, h).T @ dhg_NxGH).astype(p.w_hh.dtype),
      extra=dextra)
  dx_NxI = dxg_NxGH @ p.w_ih.astype(jnp.float32).T
  return grads, dcarry0, dx_NxI.reshape(t_len, b, i).astype(x_TxBxI.dtype)


_scan_batched.defvjp(_scan_batched_fwd, _scan_batched_bwd)


class RecurrentLayer(nnx.Module):
  """One cell scanned over time; batch-major API, time-major scan inside.

  How the scan runs (same numbers, different speed) comes from the settings, "auto" resolved
  for `jax.default_backend()` when the layer is built: `hoist_input`, `unroll` and
  `weight_grads` ('autodiff' or 'batched', see above).
  """

  def __init__(self, settings: RecurrentSettings, in_features: int, *, rngs: nnx.Rngs):
    resolved = settings.resolved()
    self.hoist_input = resolved.hoist_input
    self.unroll = resolved.unroll
    self.weight_grads = resolved.weight_grads
    self.cell = make_cell(settings.cell, in_features, settings.hidden_size, rngs=rngs)
    if isinstance(self.cell, LSTMCell):
      self.cell.init_gate_biases(
          forget_bias=settings.forget_bias, lstm_init=settings.lstm_init,
          chrono_max_len=settings.chrono_max_len, key=rngs.params())

  def scan(self, x_TxBxI: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    """`__call__` on time-major arrays (stacked layers stay time-major: no transposes)."""
    cell = self.cell
    p = _ScanParams(w_ih=cell.input_proj.kernel[...], b=cell.input_proj.bias[...],
                    w_hh=cell.recurrent_proj.kernel[...], extra=cell.extra_params())
    carry = jax.tree.map(lambda a: a.astype(jnp.float32), carry)
    scan = _scan_batched if self.weight_grads == "batched" else _scan_autodiff
    return scan(type(cell), self.hoist_input, self.unroll, p, carry, x_TxBxI)

  def __call__(self, x_BxTxI: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    """Runs the cell over all T steps from `carry`.

    Args:
      x_BxTxI: layer inputs.
      carry: the cell's carry before step 0 (see the cell's `initial_carry`).

    Returns:
      (y_BxTxH, final carry): the hidden state after every step, and the carry after the
      last step (feed it back in to continue the sequence in the next chunk).
    """
    y_TxBxH, carry = self.scan(jnp.swapaxes(x_BxTxI, 0, 1), carry)  # scan walks axis 0
    return jnp.swapaxes(y_TxBxH, 0, 1), carry


class RecurrentLM(nnx.Module):
  """Embed(V, E) -> num_layers scanned recurrent layers -> Linear(H, V).

  The token embedding is initialised N(0, 1) (PyTorch's `nn.Embedding` default) so the
  first layer's lecun-normal input projection sees unit-variance inputs.
  """

  def __init__(self, settings: RecurrentSettings, *, vocab_size: int, rngs: nnx.Rngs):
    self.settings = settings
    self.embedding = nnx.Embed(
        vocab_size, settings.embed_dim,
        embedding_init=nnx.initializers.normal(1.0), rngs=rngs)
    widths = [settings.embed_dim] + [settings.hidden_size] * (settings.num_layers - 1)
    self.layers = nnx.List([RecurrentLayer(settings, w, rngs=rngs) for w in widths])
    self.readout = nnx.Linear(settings.hidden_size, vocab_size, rngs=rngs)

  def initial_state(self, batch_size: int) -> State:
    """Zero state: a tuple with one float32 carry per layer (lstm (c_BxH, h_BxH), else h_BxH)."""
    return tuple(layer.cell.initial_carry(batch_size) for layer in self.layers)

  def embed(self, tokens_BxT: jax.Array) -> jax.Array:
    """Token embeddings x_BxTxE (float32)."""
    return self.embedding(tokens_BxT)

  def from_embeddings_with_state(self, x_BxTxE: jax.Array,
                                 state: State) -> tuple[jax.Array, State]:
    """Args: x_BxTxE embeddings, state from `initial_state` or a previous chunk.

    Returns:
      (logits_BxTxV float32, new state after the last step).
    """
    # Time-major inside: the TxBxH states (and their gradients) are never transposed; only
    # the narrow embeddings and logits are.
    h_TxBxH = jnp.swapaxes(x_BxTxE, 0, 1)
    new_state = []
    for layer, carry in zip(self.layers, state, strict=True):
      h_TxBxH, carry = layer.scan(h_TxBxH, carry)
      new_state.append(carry)
    logits_BxTxV = jnp.swapaxes(self.readout(h_TxBxH), 0, 1).astype(jnp.float32)
    return logits_BxTxV, tuple(new_state)

  def from_embeddings(self, x_BxTxE: jax.Array) -> jax.Array:
    """logits_BxTxV from embeddings x_BxTxE, starting from the zero state."""
    return self.from_embeddings_with_state(x_BxTxE, self.initial_state(x_BxTxE.shape[0]))[0]

  def apply_with_state(self, tokens_BxT: jax.Array, state: State) -> tuple[jax.Array, State]:
    """Chunked evaluation: (logits_BxTxV, new state) continuing from `state`."""
    return self.from_embeddings_with_state(self.embed(tokens_BxT), state)

  def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
    """logits_BxTxV (float32) for int32 tokens_BxT, starting from the zero state."""
    return self.from_embeddings(self.embed(tokens_BxT))
