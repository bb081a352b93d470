"""Runs a config file's sweep: python scripts/sweep.py --config=configs/copy.py --workdir=runs/copy-sweep

--config=FILE[:ARG]: ARG is the config argument every run gets (e.g. `tiny`); a model in it
(`configs/copy.py:lstm`) restricts the sweep to that model's runs. Each run gets
`<workdir>/<readable name>-<config hash>`: a run is its whole resolved config, so sweeps with
other settings never share a run. Rerunning skips finished runs (after checking their
config.json) and resumes unfinished ones. Ctrl-C stops the runs resumably.
--parallel N runs N processes at a time (--visible_devices=0,1,... gives each starting run the
least busy GPU); --launcher=submitit submits a job array (SLURM, or --cluster=local to try it).
Exit status: 0 all done, 1 some run failed, 2 a mistake in the sweep (nothing run), 130 Ctrl-C.
"""

import os
import shlex
import signal
import sys

from absl import app
from absl import flags

# configs/ (a package of this repository) is importable by config files that share code.
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqresearch import sweep  # noqa: E402
from seqresearch import sweep_launch  # noqa: E402

_CONFIG = flags.DEFINE_string("config", None, "Config file and argument, e.g. configs/copy.py:tiny")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory; one subdirectory per run.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the runs and their commands, run nothing.")
_SKIP_INVALID = flags.DEFINE_bool(
    "skip_invalid", False, "Run the members that validate; report the others (exit 1).")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at a time (local launcher).", lower_bound=1)
_DEVICES = flags.DEFINE_list("visible_devices", [], "GPU ids to spread parallel runs over.")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "submitit"], "Where runs execute.")
_CLUSTER = flags.DEFINE_string("cluster", None, "submitit cluster: None (auto: SLURM), 'local'.")
_PARTITION = flags.DEFINE_string("partition", "", "SLURM partition.")
_TIME = flags.DEFINE_integer("timeout_min", 240, "SLURM time limit per run, minutes.")
_GPUS = flags.DEFINE_integer("gpus_per_job", 1, "GPUs per SLURM job.")
_ARRAY = flags.DEFINE_integer("array_parallelism", 64, "SLURM jobs of the array at a time.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  signal.signal(signal.SIGTERM, signal.default_int_handler)  # Stop like Ctrl-C.
  try:
    return _sweep()
  except KeyboardInterrupt:
    return 130  # run_local has stopped the runs and said how to resume.


def _sweep() -> int:
  path, _, arg = _CONFIG.value.partition(":")
  try:
    runs = sweep.expand(path, arg or None, _WORKDIR.value, keep_invalid=_SKIP_INVALID.value)
  except (ValueError, ImportError, SyntaxError) as e:
    for line in str(e).splitlines():
      print(f"error: {line}", file=sys.stderr)
    return 2
  print(f"{len(runs)} runs in {_WORKDIR.value}:")
  if _DRY_RUN.value:
    for run in runs:
      state = ("invalid: " + run.error if run.error else "finished" if run.finished
               else "to run")
      print(f"  {run.name} [{state}] seeds {list(run.seeds)}\n    "
            f"{shlex.join(['python', *run.command()[1:]])}")
    return 0
  if _LAUNCHER.value == "local":
    results = sweep_launch.run_local(runs, _PARALLEL.value, tuple(_DEVICES.value))
  else:
    results = sweep_launch.run_submitit(runs, f"{_WORKDIR.value}/submitit", _CLUSTER.value,
                                 _PARTITION.value, _TIME.value, _GPUS.value, _ARRAY.value)
  print(sweep.format_rows(sweep.summarize(runs, _WORKDIR.value)))
  failed = [r for r in results if r["status"].startswith(("failed", "invalid"))]
  for r in failed:
    print(f"FAILED {r['name']}: {r['status']}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main)
