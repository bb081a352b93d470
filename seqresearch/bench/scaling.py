"""Scaling of the runner: K seeds in one program, and steps/s versus the number of devices.

Both time the real jitted train step of `seqresearch.steps` (medians of repetitions after a
warm-up; ratios are measured in the same run). Device counts other than the current one need
a fresh process (the count is fixed when JAX starts), so `steps_per_sec_by_devices` runs one
subprocess per count; on a CPU they are forced host devices that share the same cores, so the
figure there shows the cost of sharding, not a speed-up. A count whose process fails gives an
error row (its reason: the child's last stderr lines); the other counts are still measured.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jax
from ml_collections import config_dict

from seqresearch import build
from seqresearch import steps
from seqresearch.bench import harness


def bare_train_step(config: config_dict.ConfigDict, num_seeds: int
                    ) -> tuple[Callable[[Any, jax.Array], Any], Any, jax.Array]:
  """The runner's jitted train step for `num_seeds` seeds: (step, initial state, data keys).

  Raises:
    ValueError: a bad config field (before anything is compiled).
  """
  run = build.build_run(config, num_seeds=num_seeds)
  step = steps.make_train_step(run.graphdef, run.constants, run.tx, run.settings.task,
                               config.batch_size, run.mesh)
  return step, run.state, run.keys["data"]


def time_steps(config: config_dict.ConfigDict, num_seeds: int, num_steps: int,
               repetitions: int) -> float:
  """Median seconds of `num_steps` train steps of a `num_seeds`-seed program (after warm-up)."""
  step, state, data_keys = bare_train_step(config, num_seeds)
  box = {"state": jax.block_until_ready(step(state, data_keys))}  # compile and warm up

  def one_step():
    box["state"] = step(box["state"], data_keys)
    return box["state"]

  return statistics.median(harness.time_loop(one_step, num_steps) for _ in range(repetitions))


def seeds_vmapped_vs_sequential(config: config_dict.ConfigDict, num_seeds: int,
                                num_steps: int = 20, repetitions: int = 5) -> dict[str, Any]:
  """K seeds vmapped in one program against K one-seed programs run one after the other.

  Returns:
    seconds for `num_steps` steps of all K seeds each way (the sequential time is K times the
    measured one-seed time), the speed-up sequential / vmapped, and seed-steps/s each way.
  """
  together = time_steps(config, num_seeds, num_steps, repetitions)
  alone = time_steps(config, 1, num_steps, repetitions)
  return {"model": config.model.name, "num_seeds": num_seeds, "num_steps": num_steps,
          "batch_size": config.batch_size,
          "vmapped_sec": together, "sequential_sec": num_seeds * alone,
          "speedup": num_seeds * alone / together,
          "vmapped_seed_steps_per_sec": num_seeds * num_steps / together,
          "sequential_seed_steps_per_sec": num_steps / alone}


_CHILD = """
import json, sys
import jax
from ml_collections import config_dict
from seqresearch.bench import scaling
config = config_dict.ConfigDict(json.loads(sys.argv[1]))
seconds = scaling.time_steps(config, 1, int(sys.argv[2]), int(sys.argv[3]))
print(json.dumps({"devices": jax.device_count(), "seconds": seconds}))
"""


def child_command(config: config_dict.ConfigDict, num_steps: int,
                  repetitions: int) -> list[str]:
  """The command line of one device count's process (it prints one JSON line)."""
  return [sys.executable, "-c", _CHILD, config.to_json(), str(num_steps), str(repetitions)]


def _device_env(count: int) -> dict[str, str]:
  env = dict(os.environ)
  if jax.default_backend() == "cpu":
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
  else:
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(count))
    # The parent's JAX already holds most of each GPU's memory (XLA preallocates 75% by
    # default): the child allocates as it goes instead of failing at start.
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  return env


def _child_row(count: int, proc: subprocess.CompletedProcess, num_steps: int) -> dict[str, Any]:
  """The row of one device count: status 'ok' with steps/s, or 'error' with the reason."""
  if proc.returncode == 0:
    try:
      result = json.loads(proc.stdout.strip().splitlines()[-1])
      return {"devices": result["devices"], "status": "ok", "reason": None,
              "steps_per_sec": num_steps / result["seconds"]}
    except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError) as e:
      reason = f"unreadable output ({type(e).__name__}: {e}): {proc.stdout[-300:]!r}"
  else:
    tail = proc.stderr.strip().splitlines()[-3:]
    reason = f"exit status {proc.returncode}: " + " | ".join(tail)
  return {"devices": count, "status": "error", "reason": reason[:500]}


def steps_per_sec_by_devices(config: config_dict.ConfigDict, device_counts: tuple[int, ...],
                             num_steps: int = 20, repetitions: int = 5) -> list[dict[str, Any]]:
  """Train steps/s of the same global batch on 1, 2, ... devices, one subprocess per count.

  On the CPU the devices are forced host devices (XLA_FLAGS); on a GPU the first `count` GPUs.

  Returns:
    One row per count: devices, status ('ok' or 'error'), reason (None when ok),
    steps_per_sec and relative_to_1_device (when the 1-device row is ok) for ok rows.
  """
  rows = []
  for count in device_counts:
    proc = subprocess.run(child_command(config, num_steps, repetitions), env=_device_env(count),
                          capture_output=True, text=True, check=False)
    rows.append(_child_row(count, proc, num_steps))
  base = next((r["steps_per_sec"] for r in rows
               if r["devices"] == 1 and r["status"] == "ok"), None)
  for r in rows:
    if base and r["status"] == "ok":
      r["relative_to_1_device"] = r["steps_per_sec"] / base
  return rows
