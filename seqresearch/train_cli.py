"""The training command: `python scripts/train.py ...` or `python -m seqresearch.train_cli ...`.

  python scripts/train.py --config=configs/copy.py:lstm --workdir=runs/copy-lstm

Rerunning the same command resumes from the latest checkpoint; --restart moves the old run
aside. The logic lives in `seqresearch.train.train_and_evaluate` (callable from a notebook);
this module is the absl entry point, importable so that sweeps start runs with
`python -m seqresearch.train_cli` whether or not the repository's scripts/ are at hand.
"""

import sys

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from seqresearch import distributed
from seqresearch import host_memory
from seqresearch import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file and argument, e.g. configs/copy.py:lstm", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created if needed).")
_RESTART = flags.DEFINE_bool(
    "restart", False, "Move an existing run in --workdir aside and start over.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "Multi-process runs: host:port of process 0 (SLURM: automatic).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Multi-process runs: process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "Multi-process runs: this process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO; --verbosity=0 shows it.
    logging.set_verbosity(logging.WARNING)
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  try:
    # Process-wide, so set by the entry point (a notebook calling train_and_evaluate keeps its
    # own allocator): 'auto' keeps freed host memory on the CPU backend.
    host_memory.configure(_CONFIG.value.host_allocator, jax.default_backend())
    summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, restart=_RESTART.value)
  except (ValueError, train.NonFiniteLossError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  if summary["preempted"]:
    print(f"Preempted at step {summary['final_step']}; rerun the same command to resume.")
    return 143  # 128 + SIGTERM: tells a scheduler to requeue.
  print(train.format_summary(summary))
  return 0


def run() -> None:
  """Parses the flags and runs `main` (the console entry point)."""
  app.run(main)


if __name__ == "__main__":
  run()
