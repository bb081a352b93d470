"""Mixed-precision building blocks of the non-attention models (`model.compute_dtype`).

The convention (see `seqresearch.models.config.COMPUTE_DTYPES`; Micikevicius et al. 2018,
"Mixed Precision Training"): parameters stay float32 (the master copy the optimizer updates)
and are cast to the compute dtype where a matmul reads them; a matmul takes operands in the
compute dtype and accumulates its products in float32 (what bfloat16 matrix units do); its
result is float32 where it feeds a carry, a residual stream, a normalisation or the logits,
and the compute dtype where it feeds an elementwise activation. Under float32 every helper
here computes exactly what a plain float32 `x @ w` does.

Legend: N any leading shape, I input width, O output width.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike


def matmul(x_NxI: jax.Array, w_IxO: jax.Array, dtype: DTypeLike,
           out_dtype: DTypeLike = jnp.float32) -> jax.Array:
  """x @ w with both operands cast to `dtype`, products summed in float32.

  Under bfloat16 the gradient is hand-written (`_mixed_matmul`) so that the backward
  matmuls read bfloat16 operands too (JAX's own rule would multiply the float32 cotangent
  by a bfloat16 operand: a mixed-dtype matmul that an accelerator runs at float32 speed);
  their products are summed in float32 and the gradients come back in the dtypes of x and w
  (float32 for parameters). Under float32 it is plain `x @ w`, differentiated by JAX.

  Args:
    x_NxI: any leading shape N. w_IxO: weights (float32 parameters).
    dtype: the compute dtype of the operands (float32 or bfloat16).
    out_dtype: dtype of the result (float32 default; the compute dtype for activations).

  Returns:
    y_NxO in out_dtype.
  """
  dtype = jnp.dtype(dtype)
  if dtype == jnp.float32 and x_NxI.dtype == w_IxO.dtype == jnp.float32:
    return jnp.matmul(x_NxI, w_IxO).astype(out_dtype)
  return _mixed_matmul(x_NxI, w_IxO, dtype.name).astype(out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _mixed_matmul(x_NxI: jax.Array, w_IxO: jax.Array, dtype: str) -> jax.Array:
  return jnp.matmul(x_NxI.astype(dtype), w_IxO.astype(dtype),
                    preferred_element_type=jnp.float32)


def _mixed_matmul_fwd(x_NxI: jax.Array, w_IxO: jax.Array, dtype: str) -> tuple[jax.Array, Any]:
  xc_NxI, wc_IxO = x_NxI.astype(dtype), w_IxO.astype(dtype)
  y_NxO = jnp.matmul(xc_NxI, wc_IxO, preferred_element_type=jnp.float32)
  # Zero-size arrays carry the primal dtypes to the backward pass (residuals are arrays).
  tags = (jnp.zeros((0,), x_NxI.dtype), jnp.zeros((0,), w_IxO.dtype))
  return y_NxO, (xc_NxI, wc_IxO, tags)


def _mixed_matmul_bwd(dtype: str, residuals: Any, dy_NxO: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  xc_NxI, wc_IxO, (x_tag, w_tag) = residuals
  dyc_NxO = dy_NxO.astype(dtype)
  dx_NxI = jnp.matmul(dyc_NxO, wc_IxO.T, preferred_element_type=jnp.float32)
  i, o = wc_IxO.shape
  dw_IxO = jnp.matmul(xc_NxI.reshape(-1, i).T, dyc_NxO.reshape(-1, o),
                      preferred_element_type=jnp.float32)
  return dx_NxI.astype(x_tag.dtype), dw_IxO.astype(w_tag.dtype)


_mixed_matmul.defvjp(_mixed_matmul_fwd, _mixed_matmul_bwd)


def linear(x_NxI: jax.Array, w_IxO: jax.Array, b_O: jax.Array | None, dtype: DTypeLike,
           out_dtype: DTypeLike = jnp.float32) -> jax.Array:
  """`matmul(x, w)` plus the float32 bias b_O (None: no bias), then cast to out_dtype."""
  y_NxO = matmul(x_NxI, w_IxO, dtype)
  if b_O is not None:
    y_NxO = y_NxO + b_O.reshape((1,) * (y_NxO.ndim - 1) + b_O.shape)
  return y_NxO.astype(out_dtype)


def dense(layer, x_NxI: jax.Array, dtype: DTypeLike,
          out_dtype: DTypeLike = jnp.float32) -> jax.Array:
  """An `nnx.Linear` applied by `linear` (its float32 kernel and bias cast at use)."""
  bias = layer.bias[...] if layer.bias is not None else None
  return linear(x_NxI, layer.kernel[...], bias, dtype, out_dtype)
