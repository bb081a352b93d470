"""The config schema shared by every `configs/*.py`: each field declared once, with its comment.

Config files hold data (which task, which defaults); this module holds the declarations they
share and the parsing of the `get_config(arg)` argument string, so a field means the same thing
in every experiment. Library code reads configs only through `seqresearch.setup`, which turns
them into frozen dataclasses.
"""

from __future__ import annotations

from typing import Any

from ml_collections import config_dict

# Fields of the top-level config that do not change any number a run produces. They may differ
# when an existing workdir is resumed (e.g. log more often after a restart).
PRESENTATION_FIELDS = ("log_every_steps", "checkpoint_every_steps", "progress_bar",
                       "host_allocator")


def base_config() -> config_dict.ConfigDict:
  """The run-level fields every experiment has (task and model groups are added by the file)."""
  c = config_dict.ConfigDict()
  c.seed = 0  # Root PRNG seed: init, data and eval keys are all derived from it.
  c.num_seeds = 1  # Train seeds seed..seed+num_seeds-1 at once, vmapped in one program.
  c.batch_size = 64  # Training examples per step (global, over all devices).
  c.num_train_steps = 2000  # Optimizer updates in the whole run.
  c.eval_every_steps = 500  # Evaluate at step 0, every this many steps, and at the end.
  c.eval_batch_size = 256  # Examples per evaluation batch.
  c.num_eval_batches = 4  # Evaluation batches; the evaluation set is fixed by `seed`.
  c.checkpoint_every_steps = 500  # Save a checkpoint every this many steps and at the end.
  c.keep_checkpoints = 2  # Keep this many most recent checkpoints ...
  c.keep_best_checkpoints = 1  # ... plus this many best by evaluation accuracy.
  c.log_every_steps = 50  # Write averaged training metrics every this many steps.
  c.progress_bar = True  # Show a progress bar when stderr is a terminal (else log lines).
  # Host memory: 'keep' freed memory in the process (no page faults on each step's temporaries:
  # ~1.2x faster steps on CPU), 'system' malloc as it is, 'auto': keep on the CPU backend.
  c.host_allocator = "auto"
  c.optimizer = optimizer_config()
  return c


def optimizer_config() -> config_dict.ConfigDict:
  o = config_dict.ConfigDict()
  o.name = "adam"  # One of adam, adamw, sgd (with momentum), rmsprop.
  o.learning_rate = 1e-3  # Peak learning rate.
  o.schedule = "constant"  # 'constant' or 'cosine' (decays to min_lr_ratio * peak), after warmup.
  o.warmup_steps = 0  # Linear warmup from 0 to the peak, in steps.
  o.min_lr_ratio = 0.0  # Final learning rate of the cosine schedule, relative to the peak.
  o.weight_decay = 0.0  # Decoupled weight decay (adamw only).
  o.momentum = 0.9  # Momentum (sgd) / decay (rmsprop).
  o.grad_clip_norm = 1.0  # Clip the global gradient norm to this value; 0 turns clipping off.
  return o


def recurrent_model_config(cell: str) -> config_dict.ConfigDict:
  m = config_dict.ConfigDict()
  m.name = cell  # rnn, lstm or gru (transformer has its own fields).
  m.embed_dim = 64  # Token embedding width.
  m.hidden_size = 128  # Recurrent state width of each layer.
  m.num_layers = 1  # Stacked recurrent layers.
  m.forget_bias = 1.0  # LSTM forget-gate bias at init (ignored by rnn/gru and chrono).
  m.lstm_init = "default"  # 'default' or 'chrono' (Tallec & Ollivier 2018).
  m.chrono_max_len = 100  # T_max of chrono init; set it near the dependency length.
  m.hoist_input = "auto"  # Input projection before the scan ('true'), per step ('false'), 'auto'.
  m.unroll = 1  # lax.scan unroll factor.
  m.weight_grads = "auto"  # 'autodiff', 'batched' (weight grads after the scan) or 'auto'.
  return m


def transformer_model_config() -> config_dict.ConfigDict:
  m = config_dict.ConfigDict()
  m.name = "transformer"
  m.d_model = 128  # Model width.
  m.num_heads = 4  # Attention heads; must divide d_model.
  m.num_layers = 2  # Transformer blocks.
  m.mlp_dim = 512  # Hidden width of each block's MLP.
  m.pos_encoding = "sinusoidal"  # 'sinusoidal', 'learned' or 'none'.
  m.max_len = 2048  # Longest sequence supported; must be >= the task's sequence length.
  m.causal = True  # Causal (decoder) attention; False is bidirectional.
  m.attention = "auto"  # Heads: 'vmap' (reference), 'chunked', 'xla', 'cudnn'; 'auto': fastest.
  m.mlp = "auto"  # MLP gradient: 'autodiff', 'custom_vjp' or 'auto' (fastest on the backend).
  return m


MODEL_CONFIGS = {
    "rnn": lambda: recurrent_model_config("rnn"),
    "lstm": lambda: recurrent_model_config("lstm"),
    "gru": lambda: recurrent_model_config("gru"),
    "transformer": transformer_model_config,
}


def model_config(name: str) -> config_dict.ConfigDict:
  if name not in MODEL_CONFIGS:
    raise ValueError(f"config argument model={name!r}: must be one of {tuple(MODEL_CONFIGS)}.")
  return MODEL_CONFIGS[name]()


def parse_arg(arg: str | None, default_model: str) -> tuple[str, dict[str, str]]:
  """Splits 'MODEL[,key=value,...][,flag]' into the model name and the remaining options.

  Example: 'transformer,delay=200,tiny' -> ('transformer', {'delay': '200', 'tiny': ''}).
  """
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  model = default_model
  if parts and "=" not in parts[0] and parts[0] in MODEL_CONFIGS:
    model = parts.pop(0)
  options = {}
  for part in parts:
    key, _, value = part.partition("=")
    options[key.strip()] = value.strip()
  return model, options


def _convert(old: Any, value: str, path: str) -> Any:
  if isinstance(old, bool):
    if value.lower() in ("true", "1", "yes"):
      return True
    if value.lower() in ("false", "0", "no"):
      return False
    raise ValueError(f"config argument {path}={value!r}: must be true or false.")
  try:
    return type(old)(value)
  except ValueError:
    raise ValueError(
        f"config argument {path}={value!r}: must be a {type(old).__name__}.") from None


def apply_dotted(config: config_dict.ConfigDict, path: str, value: str) -> None:
  """Sets `config.a.b = value` from the string 'a.b', converting to the declared type."""
  node = config
  *groups, leaf = path.split(".")
  for g in groups:
    if g not in node or not isinstance(node[g], config_dict.ConfigDict):
      raise ValueError(f"config argument {path}={value!r}: no group {g!r}.")
    node = node[g]
  if leaf not in node:
    raise ValueError(
        f"config argument {path}={value!r}: no field {leaf!r}; fields here: {sorted(node.keys())}.")
  node[leaf] = _convert(node[leaf], value, path)


def make_tiny(config: config_dict.ConfigDict) -> None:
  """Shrinks the run and the model to a seconds-long smoke variant (the task is the file's)."""
  config.batch_size = 8
  config.num_train_steps = 6
  config.eval_every_steps = 3
  config.checkpoint_every_steps = 3
  config.log_every_steps = 2
  config.eval_batch_size = 16
  config.num_eval_batches = 2
  if config.model.name == "transformer":
    config.model.d_model, config.model.num_heads, config.model.mlp_dim = 16, 2, 32
    config.model.num_layers, config.model.max_len = 1, 512
  else:
    config.model.embed_dim, config.model.hidden_size = 8, 16
