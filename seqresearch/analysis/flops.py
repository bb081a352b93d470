"""Exact FLOP counts and sequential depth, by walking the jaxpr of a function.

Why not XLA: `jax.jit(f).lower(...).compile().cost_analysis()` counts the body of a `scan`
(an HLO while loop) once, not `length` times, so a recurrent layer over n steps is reported
as if it ran one step. This module walks `jax.make_jaxpr(fn)(*args)` instead and multiplies
each scan body by its length. Arguments may be arrays or `jax.ShapeDtypeStruct`s: only
shapes matter, nothing is computed.

Counting conventions (a FLOP is one floating-point operation on one element):
  * `dot_general`: 2 · prod(batch dims) · prod(lhs free dims) · prod(rhs free dims)
    · prod(contracting dims), i.e. one multiply and one add per term (a BxK @ KxN matmul is
    2·B·K·N). `matmul_flops` counts only these; `FlopCount.matmul_by_dtype` splits them by
    the operands' dtype (a mixed-precision run's bfloat16 matmuls are measured against the
    bfloat16 matmul roof, its float32 ones against the float32 roof).
  * Elementwise arithmetic and transcendental primitives (`ELEMENTWISE_PRIMITIVES`: add,
    add_any, sub, mul, div, rem, neg, abs, sign, max, min, clamp, pow, integer_pow, square,
    sqrt, rsqrt, cbrt, exp, exp2, log, log1p, expm1, tanh, logistic, sin, cos, tan, the
    inverse and hyperbolic trig functions, erf, erfc, erf_inv, lgamma, digamma, floor, ceil,
    round): 1 per output element, whatever the op (a tanh is 1, like an add).
  * Reductions and cumulative ops (`REDUCTION_PRIMITIVES`: reduce_sum/max/min/prod,
    argmax/argmin, cumsum/cumprod/cummax/cummin/cumlogsumexp): 1 per INPUT element.
    `scatter-add` (the gradient of a gather) and the other combining scatters
    (`SCATTER_PRIMITIVES`): 1 per update element.
  * Data movement, selection and type conversion (`FREE_PRIMITIVES`: reshape, transpose,
    broadcast, slice, gather, scatter, concatenate, stack, pad, select_n,
    convert_element_type, ...): 0.
  * Any primitive whose outputs are all non-floating (integer index arithmetic, comparisons,
    boolean masks, random bits): 0 — they are not floating-point operations.
  * `scan`: body × `length`. `cond`: the most expensive branch (an upper bound; a `cond`
    executes one branch). `while`: an error, its trip count is unknown at trace time
    (`fori_loop` with static bounds lowers to `scan` and is counted exactly).
  * Call-like primitives (`CALL_PRIMITIVES`: jit/pjit, closed_call, remat, custom_jvp_call,
    custom_vjp_call, ...): their sub-jaxpr, once. For custom derivatives this is the
    primal computation, the one that runs forward.
  * Anything else is an error under `strict=True` (the default), so a new primitive is never
    silently counted as free; `strict=False` counts it as 0 and lists it in `uncounted`.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.extend import core

ELEMENTWISE_PRIMITIVES = frozenset({
    "add", "add_any", "sub", "mul", "div", "rem", "neg", "abs", "sign", "max", "min",
    "clamp", "pow", "integer_pow", "square", "sqrt", "rsqrt", "cbrt", "exp", "exp2", "log",
    "log1p", "expm1", "tanh", "logistic", "sin", "cos", "tan", "asin", "acos", "atan",
    "atan2", "sinh", "cosh", "asinh", "acosh", "atanh", "erf", "erfc", "erf_inv", "lgamma",
    "digamma", "polygamma", "igamma", "igammac", "zeta", "bessel_i0e", "bessel_i1e",
    "regularized_incomplete_beta", "floor", "ceil", "round", "nextafter",
})
REDUCTION_PRIMITIVES = frozenset({
    "reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin", "cumsum",
    "cumprod", "cummax", "cummin", "cumlogsumexp",
})
FREE_PRIMITIVES = frozenset({
    "reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims", "slice",
    "dynamic_slice", "dynamic_update_slice", "gather", "scatter", "concatenate", "pad", "rev",
    "split", "stack", "unstack", "broadcast_to", "tile", "select_n", "convert_element_type",
    "bitcast_convert_type", "copy", "copy_p", "iota", "zeros_like", "stop_gradient",
    "reduce_precision", "optimization_barrier", "sharding_constraint", "layout_constraint",
    "reshard", "pvary", "device_put", "with_memory_space_constraint", "empty", "empty2",
    "real", "imag", "conj", "complex", "debug_callback", "debug_print",
})
SCATTER_PRIMITIVES = frozenset({
    "scatter-add", "scatter-sub", "scatter-mul", "scatter-max", "scatter-min",
})
CALL_PRIMITIVES = frozenset({
    "jit", "pjit", "call", "closed_call", "core_call", "remat", "remat2", "checkpoint",
    "custom_jvp_call", "custom_jvp_call_jaxpr", "custom_vjp_call", "custom_vjp_call_jaxpr",
    "custom_lin", "custom_vmap_call",
})


@dataclasses.dataclass(frozen=True)
class FlopCount:
  """The FLOPs of one call of a function.

  Attributes:
    total: all counted FLOPs.
    matmul: the `dot_general` share of `total`.
    by_primitive: FLOPs per primitive name.
    uncounted: primitives met that have no rule (only with strict=False; counted as 0).
    matmul_by_dtype: `matmul` split by the operands' dtype name ('bfloat16', 'float32';
      'bfloat16*float32' when the two operands differ); the values sum to `matmul`.
  """

  total: int
  matmul: int
  by_primitive: dict[str, int]
  uncounted: tuple[str, ...]
  matmul_by_dtype: dict[str, int] = dataclasses.field(default_factory=dict)


def _sub_jaxprs(params: dict[str, Any]) -> Iterator[core.Jaxpr]:
  """The jaxprs held in an equation's params (ClosedJaxpr unwrapped), in param order."""
  for value in params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, core.Jaxpr):
        yield item


def _size(aval: Any) -> int:
  return int(np.prod(aval.shape, dtype=np.int64))


def _is_float(aval: Any) -> bool:
  dtype = getattr(aval, "dtype", None)
  # jax.dtypes, not numpy: numpy raises TypeError on PRNG key dtypes (key<fry>).
  return dtype is not None and jax.dtypes.issubdtype(dtype, np.inexact)


def _operand_dtype(eqn: core.JaxprEqn) -> str:
  """The dtype name of a dot_general's operands ('a*b' when they differ)."""
  lhs, rhs = (np.dtype(v.aval.dtype).name for v in eqn.invars[:2])
  return lhs if lhs == rhs else f"{lhs}*{rhs}"


def _dot_general_flops(eqn: core.JaxprEqn) -> int:
  """2 · batch · lhs-free · rhs-free · contracting, from the operand shapes."""
  lhs_shape = eqn.invars[0].aval.shape
  rhs_shape = eqn.invars[1].aval.shape
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
  prod = lambda dims: int(np.prod(dims, dtype=np.int64))  # noqa: E731
  contract = prod([lhs_shape[i] for i in lhs_contract])
  batch = prod([lhs_shape[i] for i in lhs_batch])
  lhs_free = prod([s for i, s in enumerate(lhs_shape) if i not in (*lhs_contract, *lhs_batch)])
  rhs_free = prod([s for i, s in enumerate(rhs_shape) if i not in (*rhs_contract, *rhs_batch)])
  return 2 * batch * lhs_free * rhs_free * contract


def _while_error() -> ValueError:
  return ValueError(
      "the function contains a `while` loop, whose trip count is unknown when tracing, so "
      "its FLOPs and depth cannot be counted exactly; use `jax.lax.scan` (or `fori_loop` "
      "with static Python-int bounds, which lowers to scan).")


def _count(jaxpr: core.Jaxpr, strict: bool, uncounted: set[str]) -> collections.Counter:
  """FLOPs per primitive name of one execution of `jaxpr` (see the module docstring).

  A matmul is counted under the key ('dot_general', operand dtype); `flop_count` sums them.
  """
  counts: collections.Counter = collections.Counter()
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "scan":
      body = _count(eqn.params["jaxpr"].jaxpr, strict, uncounted)
      counts.update({k: v * int(eqn.params["length"]) for k, v in body.items()})
    elif name == "while":
      raise _while_error()
    elif name == "cond":
      branches = [_count(b.jaxpr, strict, uncounted) for b in eqn.params["branches"]]
      counts.update(max(branches, key=lambda c: sum(c.values())))
    elif name == "dot_general":
      counts[(name, _operand_dtype(eqn))] += _dot_general_flops(eqn)
    elif name in CALL_PRIMITIVES:
      for sub in _sub_jaxprs(eqn.params):
        counts.update(_count(sub, strict, uncounted))
    elif not any(_is_float(v.aval) for v in eqn.outvars) and name not in REDUCTION_PRIMITIVES:
      continue  # integer / boolean bookkeeping: not floating-point work
    elif name in ELEMENTWISE_PRIMITIVES:
      counts[name] += sum(_size(v.aval) for v in eqn.outvars)
    elif name in REDUCTION_PRIMITIVES:
      if _is_float(eqn.invars[0].aval):
        counts[name] += _size(eqn.invars[0].aval)
    elif name in SCATTER_PRIMITIVES:
      counts[name] += _size(eqn.invars[2].aval)  # operands: (operand, indices, updates)
    elif name in FREE_PRIMITIVES:
      continue
    elif strict:
      raise ValueError(
          f"count_flops: no FLOP rule for primitive {name!r}; add it to one of the sets in "
          f"seqresearch/analysis/flops.py, or pass strict=False to count it as 0 and see it "
          f"listed in FlopCount.uncounted.")
    else:
      uncounted.add(name)
      for sub in _sub_jaxprs(eqn.params):
        counts.update(_count(sub, strict, uncounted))
  return counts


def flop_count(fn: Callable[..., Any], *args: Any, strict: bool = True) -> FlopCount:
  """Traces fn(*args) and counts its FLOPs (conventions in the module docstring).

  Args:
    fn: a JAX-traceable function.
    *args: its arguments: arrays, pytrees of arrays, or `jax.ShapeDtypeStruct`s.
    strict: raise on a primitive without a counting rule (default) instead of counting 0.

  Returns:
    FlopCount with the total, the matmul part and a per-primitive breakdown.
  """
  closed = jax.make_jaxpr(fn)(*args)
  uncounted: set[str] = set()
  counts = _count(closed.jaxpr, strict, uncounted)
  by_primitive: collections.Counter = collections.Counter()
  matmul_by_dtype = {}
  for key, value in counts.items():
    if isinstance(key, tuple):  # ('dot_general', dtype)
      matmul_by_dtype[key[1]] = int(value)
      key = key[0]
    by_primitive[key] += int(value)
  return FlopCount(total=int(sum(counts.values())), matmul=int(by_primitive["dot_general"]),
                   by_primitive=dict(by_primitive), uncounted=tuple(sorted(uncounted)),
                   matmul_by_dtype=matmul_by_dtype)


def count_flops(fn: Callable[..., Any], *args: Any, strict: bool = True) -> int:
  """All FLOPs of fn(*args): matmuls, elementwise ops and reductions, scans × length."""
  return flop_count(fn, *args, strict=strict).total


def matmul_flops(fn: Callable[..., Any], *args: Any) -> int:
  """Only the `dot_general` FLOPs of fn(*args) (scans × length): the Table-1 quantity."""
  return flop_count(fn, *args, strict=False).matmul


def _loop_steps(jaxpr: core.Jaxpr) -> int:
  """Sequential loop iterations of `jaxpr`: 0 for straight-line code."""
  steps = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "scan":
      # Each of the `length` iterations waits for the previous one; an inner loop makes
      # every outer iteration itself that many steps long.
      steps += int(eqn.params["length"]) * max(1, _loop_steps(eqn.params["jaxpr"].jaxpr))
    elif name == "while":
      raise _while_error()
    elif name == "cond":
      steps += max(_loop_steps(b.jaxpr) for b in eqn.params["branches"])
    else:
      steps += sum(_loop_steps(sub) for sub in _sub_jaxprs(eqn.params))
  return steps


def sequential_depth(fn: Callable[..., Any], *args: Any) -> int:
  """The number of sequential steps of fn(*args): Table 1's "sequential operations".

  The sum over scans of their lengths (a scan nested in a scan multiplies), and 1 for
  straight-line code however large it is: an op over all positions at once (a matmul, a
  softmax) is one parallel step. `unroll` does not change it: unrolled iterations still
  depend on each other. See `dataflow_depth` for a finer measure that also sees the
  O(log n) levels of an associative scan.
  """
  return max(1, _loop_steps(jax.make_jaxpr(fn)(*args).jaxpr))


def _depths(jaxpr: core.Jaxpr, in_depths: list[int]) -> list[int]:
  """Longest chain of dependent primitives ending at each output, given the inputs' depths."""
  depth: dict[core.Var, int] = dict(zip(jaxpr.invars, in_depths, strict=True))
  get = lambda a: 0 if isinstance(a, core.Literal) else depth.get(a, 0)  # noqa: E731
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    ins = [get(a) for a in eqn.invars]
    if name == "scan":
      num_consts, num_carry = eqn.params["num_consts"], eqn.params["num_carry"]
      consts, carry = ins[:num_consts], ins[num_consts:num_consts + num_carry]
      xs = ins[num_consts + num_carry:]  # every slice of xs is as deep as the whole array
      body = eqn.params["jaxpr"].jaxpr
      ys = [0] * (len(eqn.outvars) - num_carry)
      for _ in range(int(eqn.params["length"])):
        outs = _depths(body, consts + carry + xs)
        carry = outs[:num_carry]
        ys = [max(a, b) for a, b in zip(ys, outs[num_carry:])]
      outs = carry + ys
    elif name == "while":
      raise _while_error()
    elif name == "cond":
      branch_outs = [_depths(b.jaxpr, ins[1:]) for b in eqn.params["branches"]]
      outs = [max(max(o), ins[0] + 1) for o in zip(*branch_outs)]
    elif (subs := list(_sub_jaxprs(eqn.params))) and len(subs) == 1 and \
        len(subs[0].invars) == len(ins):
      outs = _depths(subs[0], ins)  # a call: its body inlined
    else:
      outs = [1 + max(ins, default=0)] * len(eqn.outvars)
    depth.update(zip(eqn.outvars, outs))
  return [get(v) for v in jaxpr.outvars]


def dataflow_depth(fn: Callable[..., Any], *args: Any) -> int:
  """Longest chain of dependent primitive applications in fn(*args) (the critical path).

  Every primitive counts 1 step whatever its size; calls are inlined and scans unrolled
  (iterated `length` times, so this costs O(length) Python work). Attention's depth does not
  grow with n, a scan's grows as n, an associative scan's as log n.
  """
  jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
  return max(_depths(jaxpr, [0] * len(jaxpr.invars)), default=0)
