"""Copy-memory task: remember L=10 symbols across a delay, then emit them.

Run (the README's main job; a few minutes on a 2-core CPU):

  python scripts/train.py --config=configs/copy.py:lstm --workdir=runs/copy-lstm

Argument: MODEL[,delay=N][,min_delay=N][,max_delay=N][,tiny][,any.dotted.field=value]
  MODEL is any name in seqresearch.models.MODELS (default lstm). `delay=N` fixes the delay; the default
  draws it per example from [min_delay, max_delay], so one run measures accuracy over a range
  of dependency distances (distance = delay + 10). `tiny` is a seconds-long smoke variant.

Sweep (models x delays x seeds; `tiny` in the argument shrinks every run):

  python scripts/sweep.py --config=configs/copy.py --workdir=runs/copy-sweep --parallel=2

Expected (default settings, this CPU): see README "Main job" for the measured numbers.
"""

from ml_collections import config_dict

from seqresearch import configlib
from seqresearch import models


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  parsed = configlib.parse_arg(arg, delay=int, tiny=bool)
  task = config_dict.ConfigDict()
  task.name = "copy"  # Which generator (seqresearch.tasks.SETTINGS).
  task.num_symbols = 8  # Alphabet size K of the symbols to remember.
  task.copy_length = 10  # Number L of symbols to remember.
  task.min_delay = 10  # Shortest delay T (steps from the last symbol to the first recall).
  task.max_delay = 40  # Longest delay; drawn uniformly per example, padded to the longest.
  config = configlib.run_config(parsed.model, task)
  config.batch_size = 64
  # Recurrent models need more (cheaper) steps than attention to learn the copy.
  attention = models.entry(parsed.model).family == "attention"
  config.num_train_steps = 1500 if attention else 3000
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500

  # Order: `tiny` first, then the options and overrides given, so none is silently undone.
  if parsed.options["tiny"]:
    configlib.make_tiny(config)
    task.min_delay, task.max_delay = 3, 6
  if parsed.options["delay"] is not None:
    task.min_delay = task.max_delay = parsed.options["delay"]
  configlib.apply_overrides(config, parsed.overrides)
  return config


def get_sweep(arg: str | None = None) -> list[dict]:
  """Models x fixed delays x 3 seeds: accuracy against dependency distance (delay + 10)."""
  del arg
  return [{"model": model, "task.min_delay": delay, "task.max_delay": delay, "seed": seed}
          for model in models.MODEL_NAMES
          for delay in (10, 30, 100)
          for seed in range(3)]
