"""What a result was computed on: library versions and the device, for summaries and benchmarks."""

from __future__ import annotations

import platform
from typing import Any

import flax
import jax
import jaxlib
import numpy as np
import optax
import orbax.checkpoint


def versions() -> dict[str, str]:
  """Versions of Python and of every library a number of ours depends on."""
  return {"python": platform.python_version(), "jax": jax.__version__,
          "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
          "orbax_checkpoint": orbax.checkpoint.__version__, "numpy": np.__version__}


def device() -> dict[str, Any]:
  """The first device's platform ('cpu', 'gpu', 'tpu') and kind, and how many there are."""
  first = jax.devices()[0]
  return {"platform": first.platform, "kind": first.device_kind, "count": jax.device_count()}
