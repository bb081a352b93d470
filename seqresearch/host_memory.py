"""Host memory reuse for the CPU backend: keep freed memory in the process.

XLA:CPU takes each step's temporaries (activations, residuals, gradients) from malloc and
frees them at the end of the step. glibc hands large blocks back to the kernel on free (they
are mmap-ed, or trimmed off the heap top once a step frees more than about twice its largest
block), so the next step touches fresh pages and pays one page fault per 4 KiB: an LSTM
train step (B=64, n=64, d=256) took 13,000 minor faults and 82 ms, and 0 faults and 69 ms
with the settings below (PyTorch's steps gain alike: its nn.LSTM went from 52 to 39 ms; see
README "Benchmark", and tests/test_fast_paths.py for the fault count). 'keep' tells glibc never to use mmap for an allocation and never to
trim the heap, so freed blocks are reused by the next step; the
process then holds its peak memory until it exits, as an accelerator's allocator does.
(Threads other than the one that allocates first get malloc arenas of their own, and glibc
still maps a block that does not fit such an arena's heap: a step that XLA's asynchronous
dispatch runs on such a thread, more often on a loaded machine, may fault its temporaries in
afresh. Under load, 7 of 30 steps did in the worst of six runs measured; the median step
faulted in none.)

The setting is process-wide and one-way ('system' leaves malloc as it is; it cannot undo an
earlier 'keep'). It changes no number a run computes, only its speed and resident memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

from absl import logging

HOST_ALLOCATORS = ("auto", "keep", "system")

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_INT_MAX = 2**31 - 1


def check(value: str, field: str = "host_allocator") -> None:
  """Raises ValueError unless `value` is one of HOST_ALLOCATORS."""
  if value not in HOST_ALLOCATORS:
    raise ValueError(f"{field}={value!r}: must be one of {HOST_ALLOCATORS}.")


@functools.cache
def _mallopt():
  """glibc's mallopt, or None where the C library is not glibc (macOS, musl)."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    return libc.mallopt if hasattr(libc, "mallopt") else None
  except (OSError, TypeError):  # no C library to load by that name (Windows)
    return None


_applied = "system"


def configure(mode: str, backend: str) -> str:
  """Applies `mode` for `backend` ('cpu', 'gpu', 'tpu') and returns what is in effect.

  Args:
    mode: 'keep', 'system', or 'auto' ('keep' on the CPU backend, where the step's
      temporaries are host memory; 'system' elsewhere, where they live on the device).
    backend: `jax.default_backend()`.

  Returns:
    'keep' or 'system': the process's setting after the call ('keep' stays once set).
  """
  global _applied
  check(mode)
  want = ("keep" if backend == "cpu" else "system") if mode == "auto" else mode
  if want == "keep" and _applied != "keep":
    mallopt = _mallopt()
    if mallopt is None:
      logging.warning("host_allocator='keep' needs glibc's mallopt; leaving malloc as it is.")
      return _applied
    results = [mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, _INT_MAX)]
    if results != [1, 1]:
      logging.warning("mallopt refused host_allocator='keep' (results %s).", results)
      return _applied
    _applied = "keep"
  return _applied


def current() -> str:
  """The process's setting: 'keep' once `configure` applied it, else 'system'."""
  return _applied
