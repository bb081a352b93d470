"""Multi-process (multi-host) start-up: `jax.distributed.initialize`, when there are processes.

Every process runs the same program over a global mesh; process 0 alone writes the workdir's
JSON, metrics and progress (orbax coordinates the checkpoint writes of all processes).
"""

from __future__ import annotations

import os

import jax
from jax.experimental import multihost_utils


def initialize(coordinator_address: str = "", num_processes: int = 1,
               process_id: int = 0) -> None:
  """Joins a multi-process job given explicitly, or the SLURM job this process belongs to.

  Args:
    coordinator_address: 'host:port' of process 0; empty with num_processes 1 and no SLURM
      job of several tasks means a single process (nothing to do).
    num_processes: processes in the job.
    process_id: this process's index.
  """
  if num_processes > 1:
    if not coordinator_address:
      raise ValueError(f"num_processes={num_processes} needs a coordinator_address (host:port).")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"process_id={process_id}: must be in [0, {num_processes}).")
  elif int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
    return
  if jax.config.jax_platforms in (None, "", "cpu") and not os.environ.get("CUDA_VISIBLE_DEVICES"):
    # CPU processes need a collectives backend to all-reduce across processes.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if num_processes > 1:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  else:
    jax.distributed.initialize()  # SLURM: address, count and id from the environment.


def is_leader() -> bool:
  """True in the process that writes the workdir's files (process 0)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
