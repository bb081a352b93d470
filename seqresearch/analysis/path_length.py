"""Path length between two positions: the fewest operations from input t-k to output t.

Table 1 of Vaswani et al. (2017) defines the maximum path length as the length of the longest of
the shortest paths that forward signals traverse between any two positions. Here it is measured
on the computation graph of a program x_BxNxD -> y_BxNxD: every primitive application is one
operation, and the path length from input position s to output position t is the fewest
operations on any chain of data dependencies from an element of x[:, s] to an element of
y[:, t]. A recurrence over n steps gives a path that grows as k = t - s (one cell step per
position), self-attention one that does not grow with k, an associative scan one that grows as
log k, a stack of dilated convolutions one fixed by its layers.

How: the jaxpr of the program is interpreted on concrete inputs, carrying beside every value an
array of the same shape holding, per element, its fewest operations from x[:, s] (inf where it
does not depend on it). Data movement (reshape, slices, gathers, selections: the FREE
primitives of `flops`) costs nothing and moves the counts as it moves the data; an elementwise
primitive adds 1 to the smallest count among its inputs; a matmul (dot_general) adds 1 to the
smallest count among the operands of each output element's terms; a product term whose other
factor is exactly zero (a masked attention weight) carries no dependency; reductions and
cumulative ops add 1 to the smallest count over what they combine; scans are unrolled and calls
inlined. Legend: B batch, N positions, D width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core

from seqresearch.analysis import flops

INF = np.inf
_CUMULATIVE = {"cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"}
_REDUCTIONS = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin",
               "reduce_and", "reduce_or"}


def _hops_of(value: Any) -> np.ndarray:
  return np.full(np.shape(value), INF)


def _broadcast_min(arrays: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
  out = np.full(shape, INF)
  for a in arrays:
    out = np.minimum(out, np.broadcast_to(a, shape) if np.ndim(a) else np.full(shape, a))
  return out


def _dot_hops(eqn: core.JaxprEqn, lhs: np.ndarray, rhs: np.ndarray, lhs_value: Any,
              rhs_value: Any) -> np.ndarray:
  """out[b, i, j] = 1 + min over c of lhs[b, i, c] and rhs[b, c, j], in dot_general's output
  order. A term whose other factor is exactly zero (a masked attention weight) carries no
  dependency: the output's derivative through it is zero."""
  (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
  lf = [i for i in range(lhs.ndim) if i not in (*lc, *lb)]
  rf = [i for i in range(rhs.ndim) if i not in (*rc, *rb)]
  size = lambda a, dims: int(np.prod([a.shape[i] for i in dims], dtype=np.int64))  # noqa: E731

  def canonical_lhs(a):
    return np.transpose(a, (*lb, *lf, *lc)).reshape(size(lhs, lb), size(lhs, lf), size(lhs, lc))

  def canonical_rhs(a):
    return np.transpose(a, (*rb, *rc, *rf)).reshape(size(rhs, rb), size(rhs, rc), size(rhs, rf))

  l3, r3 = canonical_lhs(lhs), canonical_rhs(rhs)
  l3_nonzero = canonical_lhs(np.asarray(lhs_value) != 0)
  r3_nonzero = canonical_rhs(np.asarray(rhs_value) != 0)
  out = np.full((l3.shape[0], l3.shape[1], r3.shape[2]), INF)
  for c in range(l3.shape[2]):  # one contracted term at a time (small memory)
    via_lhs = np.where(r3_nonzero[:, c, :][:, None, :], l3[:, :, c][:, :, None], INF)
    via_rhs = np.where(l3_nonzero[:, :, c][:, :, None], r3[:, c, :][:, None, :], INF)
    out = np.minimum(out, np.minimum(via_lhs, via_rhs))
  shape = ([lhs.shape[i] for i in lb] + [lhs.shape[i] for i in lf] + [rhs.shape[i] for i in rf])
  return out.reshape(shape) + 1


def _sub(eqn: core.JaxprEqn, n_in: int) -> tuple[core.Jaxpr, list[Any]]:
  """The called jaxpr of a call-like equation and its constants."""
  for value in eqn.params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, core.ClosedJaxpr) and len(item.jaxpr.invars) == n_in:
        return item.jaxpr, list(item.consts)
      if isinstance(item, core.Jaxpr) and len(item.invars) == n_in:
        return item, []
  raise ValueError(f"path_length: cannot find the body of {eqn.primitive.name!r}.")


def _move(eqn: core.JaxprEqn, values: list[Any], hops: list[np.ndarray]) -> list[np.ndarray]:
  """A data-movement primitive applied to the counts (index operands keep their values)."""
  name = eqn.primitive.name
  if name == "select_n":  # the selected case's count, and the predicate's
    chosen = np.asarray(eqn.primitive.bind(values[0], *[jnp.asarray(h) for h in hops[1:]]))
    return [np.minimum(chosen, np.broadcast_to(hops[0], chosen.shape))]
  if name in ("real", "imag", "conj"):  # parts of complex numbers: the same elements
    return [hops[0].astype(np.float64)]
  if name == "complex":
    return [np.minimum(*np.broadcast_arrays(hops[0], hops[1])).astype(np.float64)]
  if name in ("convert_element_type", "reduce_precision", "copy", "copy_p", "stop_gradient",
              "optimization_barrier", "sharding_constraint", "pvary", "device_put"):
    return [h.astype(np.float64) for h in hops[:len(eqn.outvars)]]
  args = []
  for i, (value, h) in enumerate(zip(values, hops)):
    is_data = np.issubdtype(np.asarray(value).dtype, np.inexact) or \
        name in ("reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims", "rev",
                 "slice", "concatenate", "pad")
    if name in ("gather", "dynamic_slice", "dynamic_update_slice", "scatter") and i > 0 and \
        not np.issubdtype(np.asarray(value).dtype, np.inexact):
      is_data = False  # indices: their values, not their counts
    args.append(jnp.asarray(h, jnp.float32) if is_data else value)
  if name == "pad":  # padding value operand: unreachable
    args[1] = jnp.asarray(INF, jnp.float32)
  out = eqn.primitive.bind(*args, **eqn.params)
  out = out if eqn.primitive.multiple_results else [out]
  return [np.asarray(o, np.float64) for o in out]


def _interpret(jaxpr: core.Jaxpr, consts: list[Any], values: list[Any],
               hops: list[np.ndarray]) -> tuple[list[Any], list[np.ndarray]]:
  env: dict[Any, tuple[Any, np.ndarray]] = {}
  for var, c in zip(jaxpr.constvars, consts):
    env[var] = (c, _hops_of(c))
  for var, v, h in zip(jaxpr.invars, values, hops):
    env[var] = (v, h)

  def read(atom):
    if isinstance(atom, core.Literal):
      return atom.val, _hops_of(atom.val)
    return env[atom]

  for eqn in jaxpr.eqns:
    ins = [read(a) for a in eqn.invars]
    vals, hs = [v for v, _ in ins], [h for _, h in ins]
    name = eqn.primitive.name
    if name == "scan":
      nc, ncarry = eqn.params["num_consts"], eqn.params["num_carry"]
      body = eqn.params["jaxpr"]
      carry_v, carry_h = vals[nc:nc + ncarry], hs[nc:nc + ncarry]
      xs_v, xs_h = vals[nc + ncarry:], hs[nc + ncarry:]
      length, reverse = int(eqn.params["length"]), bool(eqn.params["reverse"])
      ys: list[list[tuple[Any, np.ndarray]]] = []
      for i in (reversed(range(length)) if reverse else range(length)):
        out_v, out_h = _interpret(body.jaxpr, list(body.consts), vals[:nc] + carry_v +
                                  [x[i] for x in xs_v], hs[:nc] + carry_h + [x[i] for x in xs_h])
        carry_v, carry_h = out_v[:ncarry], out_h[:ncarry]
        ys.append(list(zip(out_v[ncarry:], out_h[ncarry:])))
      if reverse:
        ys.reverse()
      stacked = [(jnp.stack([y[j][0] for y in ys]), np.stack([y[j][1] for y in ys]))
                 for j in range(len(eqn.outvars) - ncarry)] if ys else []
      outs = list(zip(carry_v, carry_h)) + stacked
    elif name in flops.CALL_PRIMITIVES:
      sub, sub_consts = _sub(eqn, len(vals))
      out_v, out_h = _interpret(sub, sub_consts, vals, hs)
      outs = list(zip(out_v, out_h))
    elif name in ("while", "cond"):
      raise ValueError(f"path_length: {name!r} is not supported (use scan / jnp.where).")
    else:
      out_v = eqn.primitive.bind(*vals, **eqn.params)
      out_v = out_v if eqn.primitive.multiple_results else [out_v]
      if name == "dot_general":
        out_h = [_dot_hops(eqn, hs[0], hs[1], vals[0], vals[1])]
      elif name == "mul":  # a factor that is exactly zero passes no dependency on the other
        shape = np.shape(out_v[0])
        a_h = np.where(np.broadcast_to(np.asarray(vals[1]) != 0, shape),
                       np.broadcast_to(hs[0], shape), INF)
        b_h = np.where(np.broadcast_to(np.asarray(vals[0]) != 0, shape),
                       np.broadcast_to(hs[1], shape), INF)
        out_h = [np.minimum(a_h, b_h) + 1]
      elif name in _REDUCTIONS:
        axes = tuple(eqn.params["axes"])
        out_h = [np.min(hs[0], axis=axes) + 1 for _ in out_v]
      elif name in _CUMULATIVE:
        h = jax.lax.cummin(jnp.asarray(hs[0], jnp.float32), axis=eqn.params["axis"],
                           reverse=eqn.params["reverse"])
        out_h = [np.asarray(h, np.float64) + 1]
      elif name in flops.FREE_PRIMITIVES or name == "iota":
        out_h = _move(eqn, vals, hs) if name != "iota" else [_hops_of(out_v[0])]
      else:  # elementwise: one operation after the nearest input
        shape = np.shape(out_v[0])
        try:
          broadcast = np.broadcast_shapes(shape, *[np.shape(h) for h in hs]) == shape
        except ValueError:
          broadcast = False
        if not broadcast:
          raise ValueError(f"path_length: no rule for primitive {name!r} with input shapes "
                           f"{[np.shape(h) for h in hs]} and output {shape}.")
        out_h = [_broadcast_min(hs, shape) + 1 for _ in out_v]
      outs = list(zip(out_v, out_h))
    for var, (v, h) in zip(eqn.outvars, outs):
      env[var] = (v, h)
  results = [read(a) for a in jaxpr.outvars]
  return [v for v, _ in results], [h for _, h in results]


def path_lengths(fn: Callable[..., jax.Array], params: Any, x_BxNxD: jax.Array,
                 source: int) -> np.ndarray:
  """lengths_N[t]: fewest operations from input position `source` to output position t.

  Args:
    fn: fn(params, x_BxNxD) -> y_BxNxD (e.g. from `layer_costs`), traceable.
    params: its first argument (concrete arrays).
    x_BxNxD: a concrete input.
    source: the input position s.

  Returns:
    float64 array of length N: inf where y[:, t] does not depend on x[:, s] (e.g. t < s in
    a causal program).
  """
  closed = jax.make_jaxpr(fn)(params, x_BxNxD)
  leaves = jax.tree.leaves(params)
  x_hops = np.full(np.shape(x_BxNxD), INF)
  x_hops[:, source] = 0.0
  _, (y_hops, *_) = _interpret(closed.jaxpr, list(closed.consts), [*leaves, x_BxNxD],
                               [_hops_of(leaf) for leaf in leaves] + [x_hops])
  return y_hops.min(axis=tuple(i for i in range(y_hops.ndim) if i != 1))


def path_length_by_distance(fn: Callable[..., jax.Array], params: Any, x_BxNxD: jax.Array,
                            distances: Sequence[int]) -> list[float]:
  """[fewest operations from position 0 to position k, for each k in distances].

  One interpretation from source 0 gives every distance at once (every k < N); for a program
  that treats positions alike this is the path from t - k to t for any t.
  """
  lengths_N = path_lengths(fn, params, x_BxNxD, 0)
  return [float(lengths_N[k]) for k in distances]


def concrete(params: Any, value: float = 0.1) -> Any:
  """Abstract parameters (`jax.ShapeDtypeStruct` leaves) filled with `value`: the dependency
  structure a path length measures does not depend on the weights' values."""
  return jax.tree.map(lambda s: jnp.full(s.shape, value, s.dtype), params)
