"""Copies a finished study report to a directory for git:

  python scripts/publish_report.py --workdir=runs/study-standard --out=reports/cpu-standard

REPORT.md and exactly the files it links (its PNG figures, each section's results.json) plus
learning_rates.json, at their relative paths (every link resolves); no training runs. Refused
with one line and exit status 2 when the report is missing, is a pipeline check (smoke), lists
failed analyses or is over 1 MB, or when --out is the study directory, inside or above it, or a
non-empty directory that is not an earlier published copy. The logic lives in
`seqresearch.study.publish`.
"""

from absl import app
from absl import flags

from seqresearch import cli
from seqresearch.study import publish

_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory holding REPORT.md.")
_OUT = flags.DEFINE_string("out", None, "Directory of the published copy (replaced).")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    return cli.usage_error(f"unexpected arguments {argv[1:]}; all options are --flags.")
  try:
    names = publish.publish(_WORKDIR.value, _OUT.value)
  except ValueError as e:
    return cli.usage_error(str(e))
  print(f"Published {len(names)} files to {_OUT.value}")
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
