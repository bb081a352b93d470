"""One recurrent or attention layer at sequence length n and width d: programs and formulas.

Legend: B batch, N sequence length n, D width d (input width = state width = model width),
G fused gates of a recurrent cell (rnn 1, gru 3, lstm 4), H attention heads.

The programs wrap the project's real layers (`RecurrentLayer`, `MultiHeadAttention`), built
abstractly with `nnx.eval_shape`, so sweeping n and d to thousands costs tracing only:

    fn, args = attention_layer_program(n=512, d=64)
    flops.count_flops(fn, *args); jax.jit(fn).lower(*args)

Analytic matmul FLOPs per layer (2 FLOPs per multiply-add):
  recurrent  n · 2·G·d·(I + d) per example: per step, the input projection BxI @ IxGd and the
             recurrent projection Bxd @ dxGd; 4·G·n·d² when I = d. Table 1's O(n·d²).
  attention  8·n·d² (fused QKV projection 6nd², output projection 2nd²)
             + 4·n²·d (Q Kᵀ and A V, 2n²d each, summed over heads) per example. O(n²·d).
Attention costs more than the recurrence once 4n²d + 8nd² > 4Gnd², i.e. n > (G - 2)·d, or
n > G·d comparing the n² term alone with the recurrence (the comparison behind Table 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqresearch.analysis import flops
from seqresearch.models.attention import MultiHeadAttention, causal_mask
from seqresearch.models.config import RECURRENT_CELLS, RecurrentSettings
from seqresearch.models.recurrent import ElmanCell, GRUCell, LSTMCell, RecurrentLayer

Program = tuple[Callable[..., jax.Array], tuple[Any, ...]]

_CELL_CLASSES = {"rnn": ElmanCell, "lstm": LSTMCell, "gru": GRUCell}
CELLS = tuple(_CELL_CLASSES)  # the recurrent cells with an analytic FLOP formula here


def num_gates(cell: str) -> int:
  """G of `cell`, read from the model class so the formula follows the code."""
  if cell not in _CELL_CLASSES:
    raise ValueError(f"cell={cell!r}: must be one of {RECURRENT_CELLS}.")
  return _CELL_CLASSES[cell].num_gates


def recurrent_layer_program(cell: str, n: int, d: int, *, batch: int = 1,
                            hoist_input: bool = False) -> Program:
  """One `RecurrentLayer` (input width d, state width d) over n steps from the zero carry.

  Returns:
    (fn, args): fn(params, x_BxNxD) -> y_BxNxD, args abstract (`jax.ShapeDtypeStruct`s).
  """
  settings = RecurrentSettings(cell=cell, embed_dim=d, hidden_size=d, hoist_input=hoist_input)
  layer = nnx.eval_shape(lambda: RecurrentLayer(settings, d, rngs=nnx.Rngs(0)))
  graphdef, params = nnx.split(layer)

  def fn(params: nnx.State, x_BxNxD: jax.Array) -> jax.Array:
    model = nnx.merge(graphdef, params)
    return model(x_BxNxD, model.cell.initial_carry(x_BxNxD.shape[0]))[0]

  return fn, (params, jax.ShapeDtypeStruct((batch, n, d), jnp.float32))


def attention_layer_program(n: int, d: int, *, batch: int = 1, num_heads: int = 1,
                            causal: bool = True) -> Program:
  """One `MultiHeadAttention` (width d, `num_heads` heads) over n positions.

  Returns:
    (fn, args): fn(params, x_BxNxD) -> out_BxNxD, args abstract (`jax.ShapeDtypeStruct`s).
  """
  layer = nnx.eval_shape(lambda: MultiHeadAttention(d, num_heads, rngs=nnx.Rngs(0)))
  graphdef, params = nnx.split(layer)

  def fn(params: nnx.State, x_BxNxD: jax.Array) -> jax.Array:
    mask_NxN = causal_mask(x_BxNxD.shape[1]) if causal else None
    return nnx.merge(graphdef, params)(x_BxNxD, mask_NxN)

  return fn, (params, jax.ShapeDtypeStruct((batch, n, d), jnp.float32))


def analytic_recurrent_matmul_flops(cell: str, n: int, d: int, batch: int = 1,
                                    in_features: int | None = None) -> int:
  """2·B·n·G·d·(I + d): the matmul FLOPs of `recurrent_layer_program` (I = in_features or d)."""
  width_in = d if in_features is None else in_features
  return 2 * batch * n * num_gates(cell) * d * (width_in + d)


def analytic_attention_matmul_flops(n: int, d: int, batch: int = 1,
                                    include_projections: bool = True) -> int:
  """B·(8·n·d² + 4·n²·d): the matmul FLOPs of `attention_layer_program` (any head count).

  include_projections=False gives the 4·B·n²·d of Q Kᵀ and A V alone.
  """
  return batch * ((8 * n * d * d if include_projections else 0) + 4 * n * n * d)


def crossover_n(d: int, cell: str = "lstm", include_projections: bool = True) -> float:
  """The n at which attention's analytic matmul FLOPs equal the recurrent layer's.

  Attention costs more for every n above it. With projections it is (G - 2)·d; the n²
  term alone against the recurrence gives G·d. 0.0 means attention costs more at every n
  (the Elman RNN, G = 1, against attention with its projections).
  """
  per_n_recurrent = 4 * num_gates(cell) * d * d
  per_n_attention = 8 * d * d if include_projections else 0
  # recurrent = R·n, attention = P·n + 4d·n², so they meet at n = (R - P) / 4d.
  return max(0.0, (per_n_recurrent - per_n_attention) / (4 * d))


def counted_crossover_n(d: int, cell: str = "lstm", *, num_heads: int = 1,
                        counter: Callable[..., int] = flops.matmul_flops,
                        max_n: int = 1 << 20) -> int:
  """The smallest n at which `counter` gives the attention layer more FLOPs than the recurrent.

  Measured on the traced programs, so with `counter=flops.count_flops` it includes
  the elementwise work (softmax, gates) the analytic formula leaves out. Both costs are
  convex-or-linear in n, so the difference changes sign once and bisection finds it.

  Args:
    d: width.
    cell: recurrent cell.
    num_heads: attention heads (changes only the elementwise count).
    counter: `flops.matmul_flops` or `flops.count_flops`.
    max_n: give up (ValueError) if attention is still cheaper here.
  """
  def attention_costs_more(n: int) -> bool:
    return (counter(*_flatten(attention_layer_program(n, d, num_heads=num_heads)))
            > counter(*_flatten(recurrent_layer_program(cell, n, d))))

  low, high = 0, 1  # invariant: attention is costlier at `high`, not at `low` (> 0)
  while not attention_costs_more(high):
    low, high = high, 2 * high
    if high > max_n:
      raise ValueError(f"attention is cheaper than {cell} up to n={max_n} at d={d}.")
  while high - low > 1:
    mid = (low + high) // 2
    low, high = (low, mid) if attention_costs_more(mid) else (mid, high)
  return high


def _flatten(program: Program) -> tuple[Any, ...]:
  fn, args = program
  return (fn, *args)
