"""Linear recurrences h_t = a_t * h_{t-1} + b_t, sequentially or by a parallel prefix scan.

Legend:
  T time, B batch, N state width (any trailing shape works: the ops are elementwise).

A recurrence that is linear in its state composes associatively: the pair (a, b) stands for
the map h -> a * h + b, and applying (a1, b1) then (a2, b2) is (a1 * a2, a2 * b1 + b2). So all
T states come out of `jax.lax.associative_scan` in O(log T) sequential depth (Blelloch 1990;
Martin & Cundy 2018), against O(T) steps for `jax.lax.scan`. Both forms compute the same
numbers up to float rounding; `scan` chooses ('sequential' or 'associative').

`log_linear_recurrence` is the same for positive a_t, b_t given by their logarithms, with the
associative form computed in log space (Feng et al. 2024, "Were RNNs all we needed?", log-
space minGRU/minLSTM): products of many gates never underflow before they are added.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SCANS = ("sequential", "associative")
# What 'auto' means per `jax.default_backend()`. CPU: measured (benchmarks/cpu-scan-forms.json,
# README "Benchmark"): the associative form's train step takes 1.2-3.4x the sequential one's
# and up to 2.1x its memory at n = 64 .. 4096 for every linear recurrence. GPU/TPU: the
# published choice (S5, LRU, Mamba), not yet measured here (scripts/bench.py --scan_forms).
SCAN_AUTO = {"cpu": "sequential", "gpu": "associative", "tpu": "associative"}


def resolve_scan(scan: str, backend: str | None = None) -> str:
  """`scan` with 'auto' replaced by `backend`'s choice (default: JAX's backend)."""
  if scan != "auto":
    return scan
  return SCAN_AUTO.get(backend or jax.default_backend(), SCAN_AUTO["cpu"])


def _combine(earlier: tuple[jax.Array, jax.Array], later: tuple[jax.Array, jax.Array]
             ) -> tuple[jax.Array, jax.Array]:
  (a1, b1), (a2, b2) = earlier, later
  return a1 * a2, a2 * b1 + b2


def linear_recurrence(a_TxBxN: jax.Array, b_TxBxN: jax.Array, h0_BxN: jax.Array,
                      scan: str) -> jax.Array:
  """All states of h_t = a_t * h_{t-1} + b_t from h_{-1} = h0 (real or complex).

  Args:
    a_TxBxN, b_TxBxN: coefficients (a may broadcast against b, e.g. a_1x1xN).
    h0_BxN: the state before step 0.
    scan: 'sequential' (`jax.lax.scan`, T steps) or 'associative' (O(log T) depth).

  Returns:
    h_TxBxN: the state after every step.
  """
  a_TxBxN = jnp.broadcast_to(a_TxBxN, b_TxBxN.shape)
  if scan == "sequential":
    def step(h_BxN, ab):
      h_BxN = ab[0] * h_BxN + ab[1]
      return h_BxN, h_BxN
    return jax.lax.scan(step, h0_BxN, (a_TxBxN, b_TxBxN))[1]
  if scan == "associative":
    a_cum, b_cum = jax.lax.associative_scan(_combine, (a_TxBxN, b_TxBxN), axis=0)
    return a_cum * h0_BxN[None] + b_cum  # the prefix map applied to h0
  raise ValueError(f"model.scan={scan!r}: must be one of {SCANS}.")


def _log_combine(earlier: tuple[jax.Array, jax.Array], later: tuple[jax.Array, jax.Array]
                 ) -> tuple[jax.Array, jax.Array]:
  (la1, lb1), (la2, lb2) = earlier, later
  return la1 + la2, jnp.logaddexp(la2 + lb1, lb2)


def log_linear_recurrence(log_a_TxBxN: jax.Array, log_b_TxBxN: jax.Array, h0_BxN: jax.Array,
                          scan: str) -> jax.Array:
  """All states of h_t = exp(log_a_t) * h_{t-1} + exp(log_b_t) from h_{-1} = h0 (real).

  The 'associative' form scans (log a, log b) pairs in log space and adds h0's share
  exp(sum log a) * h0 after (h0 may be zero: its logarithm is never taken). The
  'sequential' form steps in linear space.

  Returns:
    h_TxBxN float32.
  """
  if scan == "sequential":
    return linear_recurrence(jnp.exp(log_a_TxBxN), jnp.exp(log_b_TxBxN), h0_BxN, scan)
  if scan == "associative":
    la_cum, lb_cum = jax.lax.associative_scan(_log_combine, (log_a_TxBxN, log_b_TxBxN), axis=0)
    return jnp.exp(la_cum) * h0_BxN[None] + jnp.exp(lb_cum)
  raise ValueError(f"model.scan={scan!r}: must be one of {SCANS}.")


def check_scan(scan: object) -> None:
  """Raises ValueError unless `scan` is 'sequential', 'associative' or 'auto'."""
  if scan not in SCANS + ("auto",):
    raise ValueError(f"model.scan={scan!r}: must be one of {SCANS + ('auto',)}.")
