"""The adding problem (Hochreiter & Schmidhuber 1997; the Arjovsky et al. 2016 variant): n
numbers in [0, 1], one marked in each half; output their sum at the last step (regression).

Run:

  python -m seqresearch.train_cli --config=configs/adding.py:lstm --workdir=runs/add-lstm

Argument: MODEL[,distance=N][,tiny][,any.dotted.field=value]
  MODEL is any name in seqresearch.models.MODELS (default lstm). `length=N` (a task field)
  sets n; `distance=N` puts the first marked number exactly N steps before the end. The
  prediction is the model's output channel 0 at the last step; `loss` is the MSE, `accuracy`
  the share with |error| < 0.04 (Hochreiter & Schmidhuber's criterion). Baseline: answering 1
  always scores MSE 0.167 (`memoryless_baseline_loss` on every eval line). `tiny` is a
  seconds-long smoke variant.

Sweep (models x length x 3 seeds):

  python scripts/sweep.py --config=configs/adding.py --workdir=runs/add-sweep
"""

from ml_collections import config_dict

from seqresearch import configlib
from seqresearch import models

LENGTHS = (25, 50, 100)  # The sweep's sequence lengths n.


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  parsed = configlib.parse_arg(arg, distance=int, tiny=bool)
  task = config_dict.ConfigDict()
  task.name = "adding"  # Which generator (seqresearch.tasks.SETTINGS).
  task.length = 50  # Numbers n per sequence; the sum is due at the last one.
  task.num_levels = 32  # Quantisation levels of a number in [0, 1] (tokens: 2 * levels).
  task.fixed_distance = 0  # 0: first marker uniform in the first half; d: exactly d before end.
  config = configlib.run_config(parsed.model, task)
  config.batch_size = 64
  config.num_train_steps = 3000
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500

  # Order: `tiny` first, then the options and overrides given, so none is silently undone.
  if parsed.options["tiny"]:
    configlib.make_tiny(config)
    task.length, task.num_levels = 8, 4
  if parsed.options["distance"] is not None:
    task.fixed_distance = parsed.options["distance"]
    task.length = max(task.length, task.fixed_distance + 1)
  configlib.apply_overrides(config, parsed.overrides)
  return config


def get_sweep(arg: str | None = None) -> list[dict]:
  """Models x length x 3 seeds: MSE against the 0.167 baseline as n grows."""
  del arg
  return [{"model": model, "task.length": length, "seed": seed}
          for model in models.names()
          for length in LENGTHS
          for seed in range(3)]
