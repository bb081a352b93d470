"""The config schema shared by every `configs/*.py`: each field declared once, with its comment.

Config files hold data (which task, which defaults); this module holds the declarations they
share and the parsing of the `get_config(arg)` argument string, so a field means the same thing
in every experiment. Library code reads configs only through `seqresearch.build`, which turns
them into frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ml_collections import config_dict

from seqresearch import models

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


def run_config(model: str, task: config_dict.ConfigDict) -> config_dict.ConfigDict:
  """The common body of every task config: run fields, `task`, and model `model`'s group.

  The model group is the model's settings fields at their defaults (`models.model_config`);
  its learning rate and warmup come from its row of the model table.
  """
  entry = models.entry(model)
  config = base_config()
  config.task = task
  config.model = models.model_config(model)
  config.optimizer.learning_rate = entry.learning_rate
  config.optimizer.warmup_steps = entry.warmup_steps
  return config


def task_config(name: str) -> config_dict.ConfigDict:
  """`config.task` for task `name`: `name` plus every settings field at its default.

  What a task needs no config file for (configs/task.py); a task's own config file instead
  chooses defaults and options fit for experiments.

  Raises:
    ValueError: `name` is not in tasks.SETTINGS.
  """
  from seqresearch import tasks  # pylint: disable=g-import-not-at-top
  if name not in tasks.SETTINGS:
    raise ValueError(f"task.name={name!r}: must be one of {tuple(tasks.SETTINGS)}.")
  defaults = tasks.SETTINGS[name]()
  group = config_dict.ConfigDict()
  group.name = name
  for field in dataclasses.fields(defaults):
    setattr(group, field.name, getattr(defaults, field.name))
  return group


@dataclasses.dataclass(frozen=True)
class ConfigArg:
  """The parsed `get_config(arg)` string: the model, declared options (typed), overrides."""

  model: str
  options: dict[str, Any]  # every declared option: its given value (converted) or None
  overrides: dict[str, str]  # 'group.field' (or a bare task field) -> the value as written


def parse_arg(arg: str | None, default_model: str = "lstm", **spec: type) -> ConfigArg:
  """Splits 'MODEL[,option=value,...][,flag][,field=value]' into typed parts.

  Args:
    arg: the string after ':' in `--config=FILE:ARG` (None or '' for all defaults).
    default_model: the model when `arg` names none.
    **spec: the options this config file declares, name -> type (`bool` options are flags:
      'tiny' or 'tiny=true'). Anything else with '=' is a field override.

  Returns:
    ConfigArg; options not given are None.

  Raises:
    ValueError: a bare word that is neither a model nor a declared flag (a misspelt model
      name), a model given twice, a declared option with a value of the wrong type, an `int`
      option below 1 (every one is a count, length or distance; `distance=0` would otherwise
      set a task's fixed_distance to 0, which means random distances).

  Example: parse_arg('transformer,delay=200,tiny', delay=int, tiny=bool)
    -> ConfigArg('transformer', {'delay': 200, 'tiny': True}, {}).
  """
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  model, options, overrides = None, {name: None for name in spec}, {}
  flags = [name for name, kind in spec.items() if kind is bool]
  for part in parts:
    key, has_value, value = (s.strip() for s in part.partition("="))
    if not has_value and key in models.MODELS:
      if model is not None:
        raise ValueError(f"config argument {arg!r}: names two models, {model!r} and {key!r}.")
      model = key
    elif key in spec:
      kind = spec[key]
      if kind is bool and not has_value:
        options[key] = True
      else:
        options[key] = _convert(kind(), value, key)
        if kind is int and options[key] < 1:  # 0 would be a task's "off" value, silently
          raise ValueError(f"config argument {key}={options[key]}: must be an integer >= 1 "
                           "(leave the option out for the config's default).")
    elif has_value:
      overrides[key] = value
    else:
      raise ValueError(
          f"config argument {key!r}: not a model name (one of {models.MODEL_NAMES}) nor an "
          f"option (flags: {flags}; options with a value: "
          f"{[n for n in spec if n not in flags]}).")
  return ConfigArg(model=model or default_model, options=options, overrides=overrides)


def apply_overrides(config: config_dict.ConfigDict, overrides: dict[str, str]) -> None:
  """Applies a ConfigArg's overrides; a bare name is a field of `config.task`."""
  for path, value in overrides.items():
    apply_dotted(config, path if "." in path else f"task.{path}", value)


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


def find_field(config: config_dict.ConfigDict, path: str,
               label: str) -> tuple[config_dict.ConfigDict, str]:
  """The group that holds the field at the dotted `path` ('a.b': config.a), and its name ('b').

  Raises:
    ValueError: a group on the path or the field itself is missing; the message starts with
      `label` (what the caller was applying, e.g. "config argument a.b='3'").
  """
  node = config
  *groups, leaf = path.split(".")
  for g in groups:
    if g not in node or not isinstance(node[g], config_dict.ConfigDict):
      raise ValueError(f"{label}: no group {g!r}.")
    node = node[g]
  if leaf not in node:
    raise ValueError(f"{label}: no field {leaf!r}; fields here: {sorted(node.keys())}.")
  return node, leaf


def apply_dotted(config: config_dict.ConfigDict, path: str, value: str) -> None:
  """Sets `config.a.b = value` from the string 'a.b', converting to the declared type."""
  node, leaf = find_field(config, path, f"config argument {path}={value!r}")
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
  for field, value in models.entry(config.model.name).tiny.items():
    config.model[field] = value
