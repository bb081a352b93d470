"""Multi-query associative recall (Arora et al. 2023, Zoology): K key-value pairs, then queries.

Run:

  python -m seqresearch.train_cli --config=configs/mqar.py:transformer --workdir=runs/mqar-tf

Argument: MODEL[,pairs=N][,distance=N][,tiny][,any.dotted.field=value]
  MODEL is any name in seqresearch.models.MODELS (default lstm). `pairs=N` sets the number of
  key-value pairs K (the amount of information to hold); `distance=N` puts every query exactly
  N steps after its value (N >= 2K - 1; the sequence grows if needed). By default the queries
  sit at random positions, so one run measures accuracy over distances 1 .. length - 2.
  Chance: 1/K (a guess among the context's values). `tiny` is a seconds-long smoke variant.

Sweep (models x number of pairs x 3 seeds):

  python scripts/sweep.py --config=configs/mqar.py --workdir=runs/mqar-sweep
"""

from ml_collections import config_dict

from seqresearch import configlib
from seqresearch import models

PAIRS = (2, 4, 8, 16)  # The sweep's numbers of key-value pairs ...
LENGTH = 64  # ... all at this sequence length, so only the information held varies.


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  parsed = configlib.parse_arg(arg, pairs=int, distance=int, tiny=bool)
  task = config_dict.ConfigDict()
  task.name = "mqar"  # Which generator (seqresearch.tasks.SETTINGS).
  task.num_pairs = 8  # Key-value pairs K per example.
  task.length = 64  # Tokens per example: 2K context + query region (>= 3K).
  task.num_keys = 64  # Key alphabet (disjoint from values and fillers).
  task.num_values = 64  # Value alphabet.
  task.num_fillers = 0  # Filler ids between queries (0: blank, as Zoology's Figure 2).
  task.fixed_distance = 0  # 0: queries at random positions; d: each query d after its value.
  config = configlib.run_config(parsed.model, task)
  config.batch_size = 64
  config.num_train_steps = 3000
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500

  # Order: `tiny` first, then the options and overrides given, so none is silently undone.
  if parsed.options["tiny"]:
    configlib.make_tiny(config)
    # Alphabets as large as the sweep's largest K, so every sweep entry fits a tiny run.
    task.num_pairs, task.length, task.num_keys, task.num_values = 2, 12, 16, 16
  if parsed.options["pairs"] is not None:
    task.num_pairs = parsed.options["pairs"]
    task.length = max(task.length, 4 * task.num_pairs)
  if parsed.options["distance"] is not None:
    task.fixed_distance = parsed.options["distance"]
    task.length = max(task.length, task.fixed_distance + 2 * task.num_pairs)
  configlib.apply_overrides(config, parsed.overrides)
  return config


def get_sweep(arg: str | None = None) -> list[dict]:
  """Models x number of pairs x 3 seeds: recall accuracy against the information held."""
  del arg
  return [{"model": model, "task.num_pairs": pairs, "task.length": LENGTH, "seed": seed}
          for model in models.names()
          for pairs in PAIRS
          for seed in range(3)]
