"""Trains each variant whose chosen learning rate lies at the edge of the pilot's grid once
more, one grid step beyond it, and says whether that rate would have been chosen:

  python scripts/learning_rate_edge.py --workdir=runs/study-standard [--skip=s6] [--parallel=2]

For a study at a scale that tunes (its learning_rates.json and finished `learning_rate` pilot
runs): every pilot run of such a variant at its chosen rate is trained again with only the
rate changed (`tuning.beyond_edge`: 3e-3 -> 1e-2, 3e-4 -> 1e-4 on the 3e-4 .. 3e-3 grid), into
<workdir>/runs/learning_rate_edge/<variant>-lr<rate>/ (finished runs are reused), scored by the
pilot's own criterion (`tuning.score`), and written to <workdir>/learning_rate_edge.json with a
line per variant. Nothing the study chose is changed: this says whether a wider grid would.
A user error (no such study, no chosen rates, an unknown variant in --skip) is one line and
exit status 2.
"""

import dataclasses
import math
import os
import sys

# configs/ and experiments/ are packages of this repository, imported here and by the training
# processes it starts (as in scripts/report.py).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (os.environ.get("PYTHONPATH", ""), ROOT) if p)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import experiments  # noqa: E402
from configs import study as study_config  # noqa: E402
from seqresearch import cli  # noqa: E402
from seqresearch import sweep_launch  # noqa: E402
from seqresearch import workdir as workdir_lib  # noqa: E402
from seqresearch.study import runner  # noqa: E402
from seqresearch.study import tuning  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory (learning_rates.json in it).")
_SCALE = flags.DEFINE_string("scale", "standard", "The study's scale (one that tunes).")
_SKIP = flags.DEFINE_list("skip", [], "Variants not to train beyond the edge (e.g. s6: slow).")
_PARALLEL = flags.DEFINE_integer("parallel", 2, "Training processes at a time (>= 1).")
flags.mark_flag_as_required("workdir")
FILE = "learning_rate_edge.json"


def _score(run_dir: str) -> float:
  """The pilot's score of a finished run: mean final loss over seeds, inf if one diverged."""
  evals = workdir_lib.read_json(os.path.join(run_dir, workdir_lib.SUMMARY_FILE))["eval_by_seed"]
  return tuning.score([(evals[k] or {}).get("loss") for k in sorted(evals, key=int)])


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    return cli.usage_error(f"unexpected arguments {argv[1:]}; all options are --flags.")
  if _PARALLEL.value < 1:
    return cli.usage_error(f"--parallel={_PARALLEL.value}: must be an integer >= 1.")
  workdir = _WORKDIR.value
  try:
    study = runner.Study(_SCALE.value, workdir, config=study_config,
                         experiments=experiments.modules(("learning_rate",)))
    if not study.tunes:
      raise ValueError(f"--scale={_SCALE.value}: does not tune (its learning_rate.rates holds "
                       "fewer than two rates): no grid has an edge.")
    chosen = workdir_lib.read_json(tuning.path(workdir)) if os.path.isfile(
        tuning.path(workdir)) else None
    if chosen is None:
      raise ValueError(f"--workdir={workdir}: no chosen learning rates ({tuning.FILE}) of a "
                       f"scale that tunes; run its '{tuning.SWEEP}' piece first.")
    edge = tuning.beyond_edge(chosen["scores"], chosen["rates"])
    unknown = sorted(set(_SKIP.value) - set(chosen["rates"]))
    if unknown:
      raise ValueError(f"--skip={','.join(_SKIP.value)}: {unknown} not among the chosen "
                       f"variants {sorted(chosen['rates'])}.")
    pilot = study.runs(tuning.SWEEP)
  except ValueError as e:
    return cli.usage_error(str(e))
  edge = {v: r for v, r in edge.items() if v not in _SKIP.value}
  todo, pairs = [], []
  for run in pilot:
    variant = study.variant(run)
    overrides = dict(run.overrides)
    if (variant not in edge or overrides["optimizer.learning_rate"] != chosen["rates"][variant]
        or not run.finished):  # (an unfinished pilot run has no score to compare with)
      continue
    rate = edge[variant]
    new = dataclasses.replace(
        run, name=f"{variant}-lr{rate:g}",
        overrides=tuple((k, rate if k == "optimizer.learning_rate" else v)
                        for k, v in run.overrides),
        # What its config.json must hold: the pilot run's config with only the rate changed.
        config={**run.config, "optimizer": {**run.config["optimizer"], "learning_rate": rate}},
        workdir=os.path.join(workdir, "runs", "learning_rate_edge", f"{variant}-lr{rate:g}"))
    todo.append(new)
    pairs.append((variant, run, new))
  if todo:
    sweep_launch.run_local(todo, _PARALLEL.value)
  out = {"criterion": tuning.CRITERION, "variants": {}}
  for variant, old, new in pairs:
    if not new.finished:
      out["variants"][variant] = {"beyond": edge[variant], "status": "failed"}
      continue
    at_edge, beyond = _score(old.workdir), _score(new.workdir)
    finite = lambda x: x if math.isfinite(x) else None  # noqa: E731  (strict JSON)
    out["variants"][variant] = {
        "chosen": chosen["rates"][variant], "beyond": edge[variant],
        "score_chosen": finite(at_edge), "score_beyond": finite(beyond),
        "moves": bool(beyond < at_edge), "run": os.path.relpath(new.workdir, workdir)}
    print(f"{variant}: score {at_edge:.4g} at {chosen['rates'][variant]:g}, {beyond:.4g} at "
          f"{edge[variant]:g}: " + ("the wider grid would choose it" if beyond < at_edge else
                                     "the chosen rate stands"))
  workdir_lib.write_json(os.path.join(workdir, FILE), out)
  print(f"Wrote {os.path.join(workdir, FILE)}")
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
