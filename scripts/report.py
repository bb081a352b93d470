"""Writes the study report: python scripts/report.py --scale=quick --workdir=runs/study-quick

Trains the runs the experiments need (finished runs are reused, unfinished ones resume), runs
each experiment's analysis, and writes <workdir>/REPORT.md with figures, tables, the measured
Table 1 and the verdicts. Scales: smoke (about 2 minutes; tests, CI), quick (about 20 minutes
on a 2-core CPU), full (an accelerator). The logic lives in `seqresearch.report`.
"""

from absl import app
from absl import flags
from absl import logging

from seqresearch import report

_SCALE = flags.DEFINE_enum("scale", "quick", list(report.SCALES), "Size of every run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory (default runs/study-SCALE).")
_EXPERIMENTS = flags.DEFINE_list("experiments", list(report.EXPERIMENTS),
                                 f"Subset of {', '.join(report.EXPERIMENTS)}.")
_PARALLEL = flags.DEFINE_integer("parallel", 2, "Training processes at a time.")


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every restore at INFO
    logging.set_verbosity(logging.WARNING)
  unknown = sorted(set(_EXPERIMENTS.value) - set(report.EXPERIMENTS))
  if unknown:
    raise app.UsageError(f"--experiments: unknown {unknown}; allowed: {report.EXPERIMENTS}.")
  study = report.Study(scale=_SCALE.value, parallel=_PARALLEL.value,
                       workdir=_WORKDIR.value or f"runs/study-{_SCALE.value}")
  path, failed = report.write_report(
      study, [e for e in report.EXPERIMENTS if e in _EXPERIMENTS.value])
  print(f"Wrote {path}" + (f"; FAILED analyses: {', '.join(failed)}" if failed else ""))
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main)
