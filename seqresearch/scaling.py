"""Scaling measurements of the runner: K seeds in one program, and steps/s versus devices.

Both time the real jitted train step of `seqresearch.steps` (medians of repetitions after
warm-up; ratios are measured in the same run). Device counts other than the current one need
a fresh process (the count is fixed when JAX starts), so `steps_per_sec_by_devices` runs one
subprocess per count; on a CPU they are forced host devices that share the same cores, so the
figure there shows the cost of sharding, not a speed-up.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import jax
from ml_collections import config_dict

from seqresearch import build
from seqresearch import steps


def _bare_step(config: config_dict.ConfigDict, num_seeds: int):
  run = build.validate_run(config, num_devices=jax.device_count())
  tx = build.make_optimizer(config.optimizer, config.num_train_steps)
  keys = steps.seed_keys(config.seed, num_seeds)
  mesh = steps.data_mesh()
  graphdef, constants, state = steps.init_state(run.model, run.vocab_size, tx, keys["init"])
  step = steps.make_train_step(graphdef, constants, tx, run.task, config.batch_size, mesh)
  return step, steps.replicate(state, mesh), keys["data"]


def time_steps(config: config_dict.ConfigDict, num_seeds: int, num_steps: int,
               repetitions: int) -> float:
  """Median seconds for `num_steps` train steps of a `num_seeds`-seed program (after warm-up)."""
  step, state, data_keys = _bare_step(config, num_seeds)
  state = jax.block_until_ready(step(state, data_keys))  # Compile and warm up.
  times = []
  for _ in range(repetitions):
    start = time.perf_counter()
    for _ in range(num_steps):
      state = step(state, data_keys)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def seeds_vmapped_vs_sequential(config: config_dict.ConfigDict, num_seeds: int,
                                num_steps: int = 20, repetitions: int = 5) -> dict[str, Any]:
  """K seeds vmapped in one program against K one-seed programs run one after the other.

  Returns:
    seconds for num_steps steps of all K seeds each way, the speed-up, and seed-steps/s.
  """
  together = time_steps(config, num_seeds, num_steps, repetitions)
  alone = time_steps(config, 1, num_steps, repetitions)  # K sequential runs cost K times this.
  return {"model": config.model.name, "num_seeds": num_seeds, "num_steps": num_steps,
          "batch_size": config.batch_size,
          "vmapped_sec": together, "sequential_sec": num_seeds * alone,
          "speedup": num_seeds * alone / together,
          "vmapped_seed_steps_per_sec": num_seeds * num_steps / together,
          "sequential_seed_steps_per_sec": num_steps / alone}


_CHILD = """
import json, sys
from seqresearch import scaling
from ml_collections import config_dict
config = config_dict.ConfigDict(json.loads(sys.argv[1]))
seconds = scaling.time_steps(config, 1, int(sys.argv[2]), int(sys.argv[3]))
import jax
print(json.dumps({"devices": jax.device_count(), "seconds": seconds}))
"""


def steps_per_sec_by_devices(config: config_dict.ConfigDict, device_counts: tuple[int, ...],
                             num_steps: int = 20, repetitions: int = 5) -> list[dict[str, Any]]:
  """Train steps/s of the same global batch on 1, 2, ... devices, one subprocess per count.

  On CPU the devices are forced host devices (XLA_FLAGS); on GPU the first `count` GPUs.
  """
  rows = []
  for count in device_counts:
    env = dict(os.environ)
    if jax.default_backend() == "cpu":
      env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
    else:
      env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(count))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, config.to_json(), str(num_steps), str(repetitions)],
        env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
      rows.append({"devices": count, "error": out.stderr.strip().splitlines()[-1:]})
      continue
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rows.append({"devices": result["devices"], "steps_per_sec": num_steps / result["seconds"]})
  base = next((r["steps_per_sec"] for r in rows if r.get("devices") == 1), None)
  for r in rows:
    if base and "steps_per_sec" in r:
      r["relative_to_1_device"] = r["steps_per_sec"] / base
  return rows
