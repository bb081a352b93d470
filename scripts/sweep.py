"""Runs a config file's sweep: python scripts/sweep.py --config=configs/copy.py:lstm --workdir=runs/copy-sweep

Each run gets `<workdir>/<name>`; rerunning skips finished runs and resumes unfinished ones.
--parallel N runs N processes at a time (--visible_devices=0,1,... gives each its own GPU);
--launcher=submitit submits a job array (SLURM, or --cluster=local to try it here).
"""

import sys

from absl import app
from absl import flags

from seqresearch import sweep

_CONFIG = flags.DEFINE_string("config", None, "Config file and argument, e.g. configs/copy.py:lstm")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory; one subdirectory per run.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the runs and their commands, run nothing.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at a time (local launcher).")
_DEVICES = flags.DEFINE_list("visible_devices", [], "GPU ids to spread parallel runs over.")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "submitit"], "Where runs execute.")
_CLUSTER = flags.DEFINE_string("cluster", None, "submitit cluster: None (auto: SLURM), 'local'.")
_PARTITION = flags.DEFINE_string("partition", "", "SLURM partition.")
_TIME = flags.DEFINE_integer("timeout_min", 240, "SLURM time limit per run, minutes.")
_GPUS = flags.DEFINE_integer("gpus_per_job", 1, "GPUs per SLURM job.")
_ARRAY = flags.DEFINE_integer("array_parallelism", 64, "SLURM jobs of the array at a time.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> int:
  del argv
  path, _, arg = _CONFIG.value.partition(":")
  runs = sweep.expand(path, arg or None, _WORKDIR.value)
  print(f"{len(runs)} runs in {_WORKDIR.value}:")
  if _DRY_RUN.value:
    for run in runs:
      state = "finished" if run.finished else "to run"
      print(f"  {run.name} [{state}]\n    {' '.join(run.command()[1:])}")
    return 0
  if _LAUNCHER.value == "local":
    results = sweep.run_local(runs, _PARALLEL.value, tuple(_DEVICES.value))
  else:
    results = sweep.run_submitit(runs, f"{_WORKDIR.value}/submitit", _CLUSTER.value,
                                 _PARTITION.value, _TIME.value, _GPUS.value, _ARRAY.value)
  print(sweep.format_rows(sweep.summarize(runs, _WORKDIR.value)))
  failed = [r for r in results if r["status"].startswith("failed")]
  for r in failed:
    print(f"FAILED {r['name']}: {r['status']}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main)
