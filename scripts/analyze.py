"""Analyses a run's checkpoint: python scripts/analyze.py --workdir=runs/copy-lstm

Rebuilds the model from <workdir>/config.json, restores the checkpoint (--step, default the
latest) of every seed, then evaluates at --distances (default: the trained range's ends and
2x, 4x the longest; longer than training is the point), measures the gradient norm against
distance at initialisation and after training, and draws attention maps (attention models).
Writes analysis.json and PNG figures to --out (default <workdir>/analysis/step-<step>/). The
logic lives in `seqresearch.study.checkpoint_analysis.analyze_run`. A user error (no run at
--workdir, a distance that is not an integer or that the task cannot reach) is one line and
exit status 2.
"""

import json

from absl import app
from absl import flags
from absl import logging

from seqresearch import cli
from seqresearch.study import checkpoint_analysis
from seqresearch.study import stats

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by scripts/train.py.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_DISTANCES = flags.DEFINE_list("distances", [], "Dependency distances to evaluate at.")
_GRADIENT_DISTANCE = flags.DEFINE_integer(
    "gradient_distance", None, "Distance of the gradient-path batch (default: longest trained).")
_EXAMPLES = flags.DEFINE_integer("num_examples", 32, "Examples in gradient and attention batches.")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
flags.mark_flags_as_required(["workdir"])


def _distances(values: list[str]) -> list[int]:
  out = []
  for text in values:
    try:
      out.append(int(text))
    except ValueError:
      raise ValueError(f"--distances: {text!r} is not an integer; give integers, e.g. "
                       "--distances=20,80") from None
  return out


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    return cli.usage_error(f"unexpected arguments {argv[1:]}; all options are --flags.")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every restore at INFO
    logging.set_verbosity(logging.WARNING)
  if _EXAMPLES.value < 1:
    return cli.usage_error(f"--num_examples={_EXAMPLES.value}: must be an integer >= 1.")
  try:
    result = checkpoint_analysis.analyze_run(
        _WORKDIR.value, _OUT.value, step=_STEP.value,
        distances=_distances(_DISTANCES.value) or None,
        gradient_distance=_GRADIENT_DISTANCE.value, num_examples=_EXAMPLES.value)
  except (ValueError, FileNotFoundError) as e:
    return cli.usage_error(str(e))
  print(json.dumps({k: result[k] for k in ("step", "seeds", "trained_distances", "skipped")}))
  for d, s in sorted(result["accuracy_by_distance"].items(), key=lambda kv: int(kv[0])):
    print(f"  distance {d:>5}: accuracy {stats.pm(s, '.4f')} "
          f"({result['examples_by_distance'][d]} examples per seed)")
  print(f"Wrote {result['out_dir']}")
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
