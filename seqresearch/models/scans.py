"""How a recurrent cell is scanned over time: the plain scan and its batched-gradient VJP.

Legend:
  T time, B batch, I a layer's input width, H hidden width, G number of fused gates,
  N = T * B rows of the weight-gradient matmuls.

`scan_autodiff` and `scan_batched` take the cell's class (its static gate maths, see
`seqresearch.models.cells`), the parameters as a `ScanParams`, the carry and x_TxBxI, and
return (y_TxBxH, final carry). They compute the same values; their gradients differ only in
how the weight gradients are formed.

Mixed precision: the matmuls run in x_TxBxI's dtype (the layer casts its input to the compute
dtype, bfloat16 or float32): the float32 weights are cast to it at use, and the products are
summed in float32 (`precision.matmul`). The carry, y_TxBxH, the gate maths and the batched
VJP's residuals are float32, and the weight gradients come back float32 like the parameters
(the batched VJP forms them as bfloat16-operand matmuls with float32 sums).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqresearch.models import precision
from seqresearch.models.cells import Carry, RecurrentCell

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
#   `host_memory` removes most of it, and the runner turns it on for CPU). The batched form
#   keeps only the residuals its hand-written pullback needs (lstm 5, gru 4, rnn 1 arrays
#   TxBxH, against about twice that for autodiff); for the same reason hoisting the input
#   projection (G more TxBxH arrays) is slower on CPU than one small matmul per step.
#   Writing residuals and gradients in place over dead buffers (a loop-carried buffer read
#   and updated at step t) was tried: XLA then copies the whole buffers every step, so the
#   loops use scan outputs.
# * Layout: the per-step slice of one stacked TxBxGH array, split into gates inside an
#   elementwise fusion, compiles to slow code (10x slower than reading whole arrays), so
#   every stacked array the forward writes for the backward is one gate's TxBxH. The
#   backward's d hg is written whole (it is the recurrent matmul's BxGH operand anyway) and
#   only read after the loop, by the weight-gradient matmuls.


class ScanParams(NamedTuple):
  """The arrays a layer's scan reads: w_ih_IxGH, b_GH, w_hh_HxGH and the cell's extras."""

  w_ih: jax.Array
  b: jax.Array
  w_hh: jax.Array
  extra: Any


def _gates(a_BxGH: jax.Array, num_gates: int) -> tuple[jax.Array, ...]:
  return tuple(jnp.split(a_BxGH, num_gates, axis=-1))


def _hoisted_projection(p: ScanParams, x_TxBxI: jax.Array, num_gates: int,
                        bias: bool) -> tuple[jax.Array, ...]:
  """The input projection of every step as G separate float32 xg_TxBxH arrays."""
  w_IxGxH = p.w_ih.reshape(p.w_ih.shape[0], num_gates, -1)
  b_GxH = p.b.reshape(num_gates, -1)
  return tuple(precision.linear(x_TxBxI, w_IxGxH[:, k], b_GxH[k] if bias else None,
                                x_TxBxI.dtype) for k in range(num_gates))


def scan_autodiff(cell: type[RecurrentCell], hoist: bool, unroll: int, p: ScanParams,
                   carry: Carry, x_TxBxI: jax.Array) -> tuple[jax.Array, Carry]:
  """The reference form: a plain scan, differentiated by JAX. Returns (y_TxBxH, carry)."""
  g, dtype = cell.num_gates, x_TxBxI.dtype

  # `precision.matmul` casts the float32 weights at use and returns their gradient in
  # float32, so the backward scan sums the steps' weight gradients in float32.
  def body(carry: Carry, x_t: Any) -> tuple[Carry, jax.Array]:
    xg_G = x_t if hoist else _gates(precision.linear(x_t, p.w_ih, p.b, dtype), g)
    hg_BxGH = precision.matmul(cell.hidden(carry), p.w_hh, dtype)
    return cell.pointwise(p.extra, carry, xg_G, _gates(hg_BxGH, g))

  xs = _hoisted_projection(p, x_TxBxI, g, bias=True) if hoist else x_TxBxI
  carry, y_TxBxH = jax.lax.scan(body, carry, xs, unroll=unroll)
  return y_TxBxH, carry


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def scan_batched(cell: type[RecurrentCell], hoist: bool, unroll: int, p: ScanParams,
                  carry: Carry, x_TxBxI: jax.Array) -> tuple[jax.Array, Carry]:
  """Same value as `scan_autodiff`; its gradient is `_scan_batched_bwd`."""
  return scan_autodiff(cell, hoist, unroll, p, carry, x_TxBxI)


def _scan_batched_fwd(cell: type[RecurrentCell], hoist: bool, unroll: int, p: ScanParams,
                      carry0: Carry, x_TxBxI: jax.Array) -> tuple[tuple[jax.Array, Carry], Any]:
  g, dtype = cell.num_gates, x_TxBxI.dtype
  b_GxH = p.b.reshape(g, -1)
  w_hh = p.w_hh.astype(dtype)  # no gradient flows through this function: cast once

  def body(carry: Carry, x_t: Any) -> tuple[Carry, Any]:
    if hoist:  # the bias is added here, in the step's elementwise fusion: one pass less
      xg_G = tuple(x + b_GxH[k][None] for k, x in enumerate(x_t))
    else:
      xg_G = _gates(precision.linear(x_t, p.w_ih, p.b, dtype), g)
    hg_G = _gates(precision.matmul(cell.hidden(carry), w_hh, dtype), g)
    carry, h_BxH, res_t = cell.pointwise_fwd(p.extra, carry, xg_G, hg_G)
    return carry, (h_BxH, res_t)

  xs = _hoisted_projection(p, x_TxBxI, g, bias=False) if hoist else x_TxBxI
  carry, (y_TxBxH, res_R) = jax.lax.scan(body, carry0, xs, unroll=unroll)
  return (y_TxBxH, carry), (p, carry0, x_TxBxI, y_TxBxH, res_R)


def _scan_batched_bwd(cell: type[RecurrentCell], hoist: bool, unroll: int, residuals: Any,
                      cotangents: tuple[jax.Array, Carry]) -> tuple[ScanParams, Carry, jax.Array]:
  del hoist  # the input projection's gradient is the same wherever it ran
  p, carry0, x_TxBxI, y_TxBxH, res_R = residuals
  dy_TxBxH, dcarry = cotangents
  t_len, b, i = x_TxBxI.shape
  # The state each step read: h_{t-1} = y_{t-1}, and the initial carry's h for t = 0.
  hprev_TxBxH = jnp.concatenate([cell.hidden(carry0)[None], y_TxBxH[:-1]], axis=0)
  # hidden() only selects from the carry, so its pullback routes dh into the carry cotangent.
  _, hidden_pullback = jax.vjp(cell.hidden, carry0)
  dtype = x_TxBxI.dtype  # the compute dtype of every matmul (see the module docstring)
  w_hh_GHxH = p.w_hh.T.astype(dtype)

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
    (dcarry_h,) = hidden_pullback(precision.matmul(dhg_BxGH, w_hh_GHxH, dtype))
    dcarry_prev = jax.tree.map(jnp.add, dcarry_prev, dcarry_h)
    out = (dhg_BxGH, tuple(dz[cell.xg_slots[k]] for k in xg_only))
    return (dcarry_prev, jax.tree.map(jnp.add, dextra, dextra_t)), out

  dextra0 = jax.tree.map(jnp.zeros_like, p.extra)
  (dcarry0, dextra), (dhg_TxBxGH, dxg_only) = jax.lax.scan(
      body, (dcarry, dextra0), (res_R, hprev_TxBxH, dy_TxBxH), reverse=True, unroll=unroll)
  n, h = t_len * b, hprev_TxBxH.shape[-1]  # the weight gradients: (T*B)-deep matmuls
  x_NxI = x_TxBxI.reshape(n, i)
  dhg_NxGH = dhg_TxBxGH.reshape(n, -1)
  if xg_only:  # d xg: d hg with the differing blocks swapped in (once, after the loop)
    blocks = [dhg_NxGH[:, k * h:(k + 1) * h] for k in range(cell.num_gates)]
    for k, d_TxBxH in zip(xg_only, dxg_only, strict=True):
      blocks[k] = d_TxBxH.reshape(n, h)
    dxg_NxGH = jnp.concatenate(blocks, axis=-1)
  else:
    dxg_NxGH = dhg_NxGH
  # Float32 results (products summed in float32) cast to the parameters' dtype (float32).
  grads = ScanParams(
      w_ih=precision.matmul(x_NxI.T, dxg_NxGH, dtype, p.w_ih.dtype),
      b=dxg_NxGH.sum(0).astype(p.b.dtype),
      w_hh=precision.matmul(hprev_TxBxH.reshape(n, h).T, dhg_NxGH, dtype, p.w_hh.dtype),
      extra=dextra)
  dx_NxI = precision.matmul(dxg_NxGH, p.w_ih.T, dtype, x_TxBxI.dtype)
  return grads, dcarry0, dx_NxI.reshape(t_len, b, i)


scan_batched.defvjp(_scan_batched_fwd, _scan_batched_bwd)
