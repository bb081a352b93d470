"""Writes the study report: python scripts/report.py --scale=quick --workdir=runs/study-quick

Trains the runs the experiments need (finished runs are reused, unfinished ones resume), runs
each experiment's analysis, and writes <workdir>/REPORT.md with figures, tables, the measured
Table 1 and the verdicts. Scales (configs/study.py): smoke (a few minutes; checks the pipeline
only: a banner and no verdicts), quick (each effect's direction, on a 2-core CPU), standard
(what the conclusions rest on without an accelerator: 5 seeds, tuned learning rates, about 3 h
on a 2-core CPU, in resumable pieces: --experiments=learning_rate first), full (an
accelerator). The logic lives in `seqresearch.study`; the experiments in experiments/.
--restate writes REPORT.md again from each section's saved results.json, with the verdicts
derived anew by the current code (nothing trained, analysed or timed). A user error (unknown
scale or experiment, a bad path, --restate without saved results) is one line and exit status 2.
"""

import os
import sys

# configs/ and experiments/ are packages of this repository; the training processes the
# study starts import configs/ too, so the root goes on their PYTHONPATH as well.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (os.environ.get("PYTHONPATH", ""), ROOT) if p)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import experiments  # noqa: E402
from configs import study as study_config  # noqa: E402
from seqresearch import cli  # noqa: E402
from seqresearch.study import report  # noqa: E402
from seqresearch.study import runner  # noqa: E402

_SCALE = flags.DEFINE_string("scale", "quick", f"One of {', '.join(study_config.SCALES)}.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory (default runs/study-SCALE).")
_EXPERIMENTS = flags.DEFINE_list("experiments", list(experiments.NAMES),
                                 f"Subset of {', '.join(experiments.NAMES)}.")
_PARALLEL = flags.DEFINE_integer("parallel", 2, "Training processes at a time (>= 1).")
_RESTATE = flags.DEFINE_bool(
    "restate", False, "Write REPORT.md from each section's saved results.json, its verdict "
    "derived anew by the current code: nothing trained, analysed or timed.")


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    return cli.usage_error(f"unexpected arguments {argv[1:]}; all options are --flags.")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every restore at INFO
    logging.set_verbosity(logging.WARNING)
  if _PARALLEL.value < 1:
    return cli.usage_error(f"--parallel={_PARALLEL.value}: must be an integer >= 1.")
  workdir = _WORKDIR.value or f"runs/study-{_SCALE.value}"
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    return cli.usage_error(f"--workdir={workdir}: exists and is not a directory.")
  try:
    modules = experiments.modules(tuple(_EXPERIMENTS.value))
    study = runner.Study(scale=_SCALE.value, workdir=workdir, config=study_config,
                         experiments=modules, parallel=_PARALLEL.value)
  except ValueError as e:
    return cli.usage_error(str(e))
  omitted = [name for name in experiments.NAMES if name not in modules]
  if _RESTATE.value:
    try:
      print(f"Wrote {report.restate_report(study, omitted=omitted)}")
    except ValueError as e:
      return cli.usage_error(str(e))
    return 0
  path, failed = report.write_report(study, omitted=omitted)
  print(f"Wrote {path}" + (f"; FAILED analyses: {', '.join(failed)}" if failed else ""))
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
