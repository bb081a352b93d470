"""Copying long strings (Jelassi et al. 2024, "Repeat After Me"): a random string of length L,
a separator, then the same string again (teacher-forced); accuracy against L.

Run:

  python -m seqresearch.train_cli --config=configs/long_copy.py:transformer --workdir=runs/lc-tf

Argument: MODEL[,length=N][,tiny][,any.dotted.field=value]
  MODEL is any name in seqresearch.models.MODELS (default lstm). By default each string's
  length is drawn from [min_length, max_length], so one run reports accuracy by length
  (`accuracy_by_distance`: every symbol is copied L steps after it was read);
  `length=N` fixes it. `sequence_accuracy` is the paper's whole-string accuracy. Chance:
  1/num_symbols per symbol. `tiny` is a seconds-long smoke variant.

Sweep (models x longest training string x 3 seeds):

  python scripts/sweep.py --config=configs/long_copy.py --workdir=runs/lc-sweep
"""

from ml_collections import config_dict

from seqresearch import configlib
from seqresearch import models

MAX_LENGTHS = (16, 32, 64)  # The sweep's longest training strings.


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  parsed = configlib.parse_arg(arg, length=int, tiny=bool)
  task = config_dict.ConfigDict()
  task.name = "long_copy"  # Which generator (seqresearch.tasks.SETTINGS).
  task.num_symbols = 26  # Alphabet A of the strings (the paper: 26 letters).
  task.min_length = 4  # Shortest string L.
  task.max_length = 32  # Longest string; L uniform in [min_length, max_length].
  config = configlib.run_config(parsed.model, task)
  config.batch_size = 64
  config.num_train_steps = 3000
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500

  # Order: `tiny` first, then the options and overrides given, so none is silently undone.
  if parsed.options["tiny"]:
    configlib.make_tiny(config)
    task.num_symbols, task.min_length, task.max_length = 6, 2, 6
  if parsed.options["length"] is not None:
    task.min_length = task.max_length = parsed.options["length"]
  configlib.apply_overrides(config, parsed.overrides)
  return config


def get_sweep(arg: str | None = None) -> list[dict]:
  """Models x longest training string x 3 seeds: accuracy by string length."""
  del arg
  return [{"model": model, "task.max_length": length, "seed": seed}
          for model in models.names()
          for length in MAX_LENGTHS
          for seed in range(3)]
