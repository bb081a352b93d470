"""Induction heads (Olsson et al. 2022; Gu & Dao 2023, Mamba §4.1.2): a trigger token followed
once by a target symbol in a random sequence; at the end the trigger again, and the model must
emit the target.

Run:

  python -m seqresearch.train_cli --config=configs/induction.py:transformer --workdir=runs/ih-tf

Argument: MODEL[,distance=N][,tiny][,any.dotted.field=value]
  MODEL is any name in seqresearch.models.MODELS (default lstm). `length=N` (a task field)
  sets the training length L; the trigger position is random, so one run measures accuracy
  over distances 1 .. L-2. `distance=N` fixes it. Length generalisation: evaluate a trained
  run at 2x-16x its length (`task.at_length(n)`, or `analyze.evaluate_at_distances` with
  distances past L-2); the Transformer needs model.max_len >= 16 L (default 2048 >= 16 * 64).
  Chance: 1/16. `tiny` is a seconds-long smoke variant.

Sweep (models x training length x 3 seeds):

  python scripts/sweep.py --config=configs/induction.py --workdir=runs/ih-sweep
"""

from ml_collections import config_dict

from seqresearch import configlib
from seqresearch import models

LENGTHS = (32, 64)  # The sweep's training lengths.


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  parsed = configlib.parse_arg(arg, distance=int, tiny=bool)
  task = config_dict.ConfigDict()
  task.name = "induction"  # Which generator (seqresearch.tasks.SETTINGS).
  task.num_symbols = 16  # Alphabet A of the random sequence (Mamba: 16).
  task.length = 64  # Training length L, both triggers included (Mamba: 256).
  task.fixed_distance = 0  # 0: random trigger position; d: target exactly d before the end.
  config = configlib.run_config(parsed.model, task)
  config.batch_size = 64
  config.num_train_steps = 3000
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500

  # Order: `tiny` first, then the options and overrides given, so none is silently undone.
  if parsed.options["tiny"]:
    configlib.make_tiny(config)
    task.num_symbols, task.length = 4, 12
  if parsed.options["distance"] is not None:
    task.fixed_distance = parsed.options["distance"]
    task.length = max(task.length, task.fixed_distance + 2)
  configlib.apply_overrides(config, parsed.overrides)
  return config


def get_sweep(arg: str | None = None) -> list[dict]:
  """Models x training length x 3 seeds (evaluate each at 2x-16x its length afterwards)."""
  del arg
  return [{"model": model, "task.length": length, "seed": seed}
          for model in models.names()
          for length in LENGTHS
          for seed in range(3)]
