"""Selective copying (Gu & Dao 2023, Mamba §4.1.1): M symbols at random positions among noise,
emitted in order after the context, one per marker token.

Run:

  python -m seqresearch.train_cli --config=configs/selective_copy.py:lstm --workdir=runs/sc-lstm

Argument: MODEL[,context=N][,distance=N][,tiny][,any.dotted.field=value]
  MODEL is any name in seqresearch.models.MODELS (default lstm). `context=N` scatters the
  symbols over N positions (distances then range over M .. N); `distance=N` puts every symbol
  exactly N steps before its output (contiguous symbols: the plain copy task). Evaluation
  reports accuracy by distance. Chance: 1/num_symbols. `tiny` is a seconds-long smoke variant.

Sweep (models x context length x 3 seeds):

  python scripts/sweep.py --config=configs/selective_copy.py --workdir=runs/sc-sweep
"""

from ml_collections import config_dict

from seqresearch import configlib
from seqresearch import models

CONTEXTS = (16, 64, 256)  # The sweep's context lengths C.


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  parsed = configlib.parse_arg(arg, context=int, distance=int, tiny=bool)
  task = config_dict.ConfigDict()
  task.name = "selective_copy"  # Which generator (seqresearch.tasks.SETTINGS).
  task.num_symbols = 8  # Alphabet A of the symbols to copy.
  task.copy_length = 8  # Symbols M to remember per example.
  task.context_len = 64  # Positions C the symbols are scattered over (sequence: C + M).
  task.fixed_distance = 0  # 0: random positions; d: contiguous symbols, every output d after.
  config = configlib.run_config(parsed.model, task)
  config.batch_size = 64
  config.num_train_steps = 3000
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500

  # Order: `tiny` first, then the options and overrides given, so none is silently undone.
  if parsed.options["tiny"]:
    configlib.make_tiny(config)
    task.copy_length, task.context_len = 3, 10
  if parsed.options["context"] is not None:
    task.context_len = parsed.options["context"]
  if parsed.options["distance"] is not None:
    task.fixed_distance = parsed.options["distance"]
    task.context_len = max(task.context_len, task.fixed_distance)
  configlib.apply_overrides(config, parsed.overrides)
  return config


def get_sweep(arg: str | None = None) -> list[dict]:
  """Models x context length x 3 seeds: accuracy by distance as the noise grows."""
  del arg
  return [{"model": model, "task.context_len": context, "seed": seed}
          for model in models.names()
          for context in CONTEXTS
          for seed in range(3)]
