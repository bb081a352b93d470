"""Copy-memory task: remember L=10 symbols across a delay, then emit them.

Run (the README's main job; a few minutes on a 2-core CPU):

  python scripts/train.py --config=configs/copy.py:lstm --workdir=runs/copy-lstm

Argument: MODEL[,delay=N][,min_delay=N][,max_delay=N][,tiny][,any.dotted.field=value]
  MODEL is rnn, lstm, gru or transformer (default lstm). `delay=N` fixes the delay; the default
  draws it per example from [min_delay, max_delay], so one run measures accuracy over a range
  of dependency distances (distance = delay + 10). `tiny` is a seconds-long smoke variant.

Sweep (models x delays x seeds; `tiny` in the argument shrinks every run):

  python scripts/sweep.py --config=configs/copy.py --workdir=runs/copy-sweep --parallel=2

Expected (default settings, this CPU): see README "Main job" for the measured numbers.
"""

from ml_collections import config_dict

from seqresearch import configlib


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  model, options = configlib.parse_arg(arg, default_model="lstm")
  config = configlib.base_config()
  config.task = config_dict.ConfigDict()
  config.task.name = "copy"  # Which generator: copy or agreement.
  config.task.num_symbols = 8  # Alphabet size K of the symbols to remember.
  config.task.copy_length = 10  # Number L of symbols to remember.
  config.task.min_delay = 10  # Shortest delay T (steps from the last symbol to the first recall).
  config.task.max_delay = 40  # Longest delay; drawn uniformly per example, padded to the longest.
  config.model = configlib.model_config(model)

  config.batch_size = 64
  # Recurrent models need more (cheaper) steps than the Transformer to learn the copy.
  config.num_train_steps = 3000 if model != "transformer" else 1500
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  config.optimizer.learning_rate = 3e-3 if model != "transformer" else 1e-3
  config.optimizer.warmup_steps = 0 if model != "transformer" else 100

  if "delay" in options:
    config.task.min_delay = config.task.max_delay = int(options.pop("delay"))
  if "tiny" in options:
    options.pop("tiny")
    configlib.make_tiny(config)
    config.task.min_delay, config.task.max_delay = 3, 6
  for path, value in options.items():
    configlib.apply_dotted(config, path if "." in path else f"task.{path}", value)
  return config



def get_sweep(arg: str | None = None) -> list[dict]:
  """Models x fixed delays x 3 seeds: accuracy against dependency distance (delay + 10)."""
  del arg
  return [{"model": model, "task.min_delay": delay, "task.max_delay": delay, "seed": seed}
          for model in ("rnn", "lstm", "gru", "transformer")
          for delay in (10, 30, 100)
          for seed in range(3)]
