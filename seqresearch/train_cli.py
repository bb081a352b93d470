"""The training command: `python scripts/train.py ...` or `python -m seqresearch.train_cli ...`.

  python scripts/train.py --config=configs/copy.py:lstm --workdir=runs/copy-lstm

Rerunning the same command resumes from the latest checkpoint; --restart moves the old run
aside. The logic lives in `seqresearch.train.train_and_evaluate` (callable from a notebook);
this module is the absl entry point, importable so that sweeps start runs with
`python -m seqresearch.train_cli` whether or not the repository's scripts/ are at hand.

Exit status: 0 trained and evaluated (the summary printed); 1 a fault of the run's files or
machine (NaN/Inf loss, a damaged checkpoint, a full disk, a damaged metrics file: one line);
2 a user's mistake (a bad flag or config value, a workdir in use: one line, before anything
compiles); 143 stopped by SIGTERM (preemption) after saving a checkpoint: rerun to resume.
"""

import sys

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from seqresearch import checkpointing
from seqresearch import cli
from seqresearch import distributed
from seqresearch import host_memory
from seqresearch import metric_writer
from seqresearch import models
from seqresearch import train
from seqresearch import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", None,
    "FILE[:MODEL[,option=value...][,tiny][,group.field=value...]], e.g. configs/copy.py:lstm "
    "or configs/copy.py:transformer,delay=200,tiny. MODEL is one of "
    f"{', '.join(models.MODEL_NAMES)}; the options are in the config file's docstring. "
    "Any field: --config.group.field=value.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created if needed).")
_RESTART = flags.DEFINE_bool(
    "restart", False, "Move an existing run in --workdir aside and start over.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "Multi-process runs: host:port of process 0 (SLURM: automatic).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-process runs: process count (default: every task of an srun "
    "step, else 1; 1 forces one process whatever SLURM's variables say).")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "Multi-process runs: this process's index.")
flags.mark_flags_as_required(["config", "workdir"])


# Faults of the run's files or machine (exit 1) and a user's mistakes (exit 2): one line each.
_FAULTS = (train.NonFiniteLossError, checkpointing.DamagedCheckpointError,
           workdir_lib.DiskFullError, metric_writer.MetricsFileError)
_USER_ERRORS = (ValueError, workdir_lib.WorkdirInUseError)


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}: every setting is a flag "
          "(--config=FILE:ARG, --config.FIELD=VALUE, --workdir=DIR).", file=sys.stderr)
    return 2
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO; --verbosity=0 shows it.
    logging.set_verbosity(logging.WARNING)
  try:
    config = _CONFIG.value
    allocator = config.host_allocator  # config_flags raises a config file's load error here.
  except OSError as e:
    print(f"error: {cli.flag_error_line(e, sys.argv)}", file=sys.stderr)
    return 2
  try:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    # Process-wide, so set by the entry point (a notebook calling train_and_evaluate keeps its
    # own allocator): 'auto' keeps freed host memory on the CPU backend.
    host_memory.configure(allocator, jax.default_backend())
    summary = train.train_and_evaluate(config, _WORKDIR.value, restart=_RESTART.value)
  except _FAULTS as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except _USER_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if summary["preempted"]:
    print(f"Preempted at step {summary['final_step']}; rerun the same command to resume.")
    return 143  # 128 + SIGTERM: tells a scheduler to requeue.
  print(train.format_summary(summary))
  return 0


def run() -> None:
  """Parses the flags and runs `main` (the console entry point)."""
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
