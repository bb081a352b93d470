"""Multi-process (multi-host) start-up: `jax.distributed.initialize`, when there are processes.

Every process runs the same program over a global mesh; process 0 alone writes the workdir's
JSON, metrics and progress (orbax coordinates the checkpoint writes of all processes).

How the process count is decided:
  num_processes > 1    explicit job: coordinator_address and process_id as given.
  num_processes == 1   one process, whatever the environment says (e.g. a SLURM batch script).
  num_processes None   automatic: one process outside SLURM; inside a job step that `srun`
                       started with several tasks, every task joins (address, count and id
                       from SLURM's variables). SLURM variables of several tasks without an
                       srun step (plain `python` in an sbatch script or a copied environment)
                       are refused at once: the other tasks would never come, and waiting for
                       them looks like a hang.
"""

from __future__ import annotations

import os

import jax
from jax.experimental import multihost_utils

# Set in every task of a job step that srun started (not in the batch script itself).
SRUN_STEP_VARIABLES = ("SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_PROCID",
                       "SLURM_LOCALID", "SLURM_JOB_ID")
# How long the tasks of an srun step wait for each other before giving up (seconds).
SLURM_JOIN_TIMEOUT_S = 300


class LaunchError(ValueError):
  """The process settings and the environment do not describe a job that can start."""


def _slurm_tasks() -> int:
  text = os.environ.get("SLURM_NTASKS", "1")
  try:
    return int(text)
  except ValueError:
    raise LaunchError(f"SLURM_NTASKS={text!r}: not an integer.") from None


def initialize(coordinator_address: str = "", num_processes: int | None = None,
               process_id: int = 0) -> None:
  """Joins a multi-process job given explicitly, or the srun step this process belongs to.

  Args:
    coordinator_address: 'host:port' of process 0 (explicit jobs only).
    num_processes: processes in the job; 1 forces a single process; None decides from the
      environment (see the module docstring).
    process_id: this process's index (explicit jobs only).

  Raises:
    LaunchError (a ValueError): bad explicit settings, or SLURM variables of several tasks in
      a process that srun did not start (the message says how to opt out).
  """
  if num_processes is not None and num_processes < 1:
    raise LaunchError(f"num_processes={num_processes}: must be >= 1.")
  if num_processes == 1:
    return
  if num_processes is None:
    tasks = _slurm_tasks()
    if tasks <= 1:
      return
    missing = [v for v in SRUN_STEP_VARIABLES if v not in os.environ]
    if missing:
      raise LaunchError(
          f"SLURM_NTASKS={tasks} but this process was not started by srun ({missing[0]} is "
          f"unset), so the other {tasks - 1} task(s) would never join: start it with `srun "
          "python ...` to train over the job's tasks, or pass --num_processes=1 to run one "
          "process.")
  else:
    if not coordinator_address:
      raise LaunchError(
          f"num_processes={num_processes} needs a coordinator_address (host:port).")
    if not 0 <= process_id < num_processes:
      raise LaunchError(f"process_id={process_id}: must be in [0, {num_processes}).")
  if jax.config.jax_platforms in (None, "", "cpu") and not os.environ.get("CUDA_VISIBLE_DEVICES"):
    # CPU processes need a collectives backend to all-reduce across processes.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if num_processes is not None:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  else:  # srun step: address, count and id from the environment.
    jax.distributed.initialize(initialization_timeout=SLURM_JOIN_TIMEOUT_S)


def is_leader() -> bool:
  """True in the process that writes the workdir's files (process 0)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
