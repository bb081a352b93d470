"""The boundary from a ConfigDict to what the library runs: task settings, model, optimizer.

  run = build_run(config)   # validate -> optimizer -> keys -> init -> replicate

Everything here validates before anything is compiled: a bad config fails with a message that
names the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import optax
from flax import nnx
from ml_collections import config_dict

from seqresearch import host_memory
from seqresearch import models
from seqresearch import progress
from seqresearch import steps
from seqresearch import tasks

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """The validated, frozen content of a run config."""

  task: Any  # an instance of a class in tasks.SETTINGS
  model: Any  # an instance of a settings class of the model table (models.MODELS)
  vocab_size: int
  seq_len: int


def _fields(group: config_dict.ConfigDict) -> dict[str, Any]:
  return {k: v for k, v in group.items() if k != "name"}


def task_settings(task_config: config_dict.ConfigDict) -> Any:
  name = task_config.name
  if name not in tasks.SETTINGS:
    raise ValueError(f"task.name={name!r}: must be one of {tuple(tasks.SETTINGS)}.")
  cls = tasks.SETTINGS[name]
  allowed = {f.name for f in dataclasses.fields(cls)}
  for key in _fields(task_config):
    if key not in allowed:
      raise ValueError(f"task.{key}: not a field of the {name} task; allowed: {sorted(allowed)}.")
  return cls(**_fields(task_config))


def _check_int(config: config_dict.ConfigDict, name: str, minimum: int) -> None:
  value = config[name]
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}.")


def _check_finite(group: config_dict.ConfigDict, prefix: str = "") -> None:
  """Rejects NaN and Inf in any float field (they would compile, then fail as a NaN loss)."""
  for key, value in group.items():
    if isinstance(value, config_dict.ConfigDict):
      _check_finite(value, f"{prefix}{key}.")
    elif isinstance(value, float) and not math.isfinite(value):
      raise ValueError(f"{prefix}{key}={value}: must be a finite number.")


def _check_effective(config: config_dict.ConfigDict) -> None:
  """Refuses optimizer settings that the chosen optimizer or schedule would ignore."""
  opt = config.optimizer
  if opt.weight_decay > 0 and opt.name != "adamw":
    raise ValueError(
        f"optimizer.weight_decay={opt.weight_decay}: only optimizer.name='adamw' applies weight "
        f"decay (name is {opt.name!r}); use adamw or weight_decay=0.")
  if opt.min_lr_ratio > 0 and opt.schedule != "cosine":
    raise ValueError(
        f"optimizer.min_lr_ratio={opt.min_lr_ratio}: only the 'cosine' schedule decays to it "
        f"(schedule is {opt.schedule!r}); use schedule=cosine or min_lr_ratio=0.")


def run_warnings(config: config_dict.ConfigDict) -> list[str]:
  """Settings that are valid but partly take no effect in this run (one line each)."""
  out = []
  steps_total, opt = config.num_train_steps, config.optimizer
  if opt.warmup_steps > steps_total:
    out.append(f"optimizer.warmup_steps={opt.warmup_steps} is longer than the run "
               f"(num_train_steps={steps_total}): the peak learning rate "
               f"{opt.learning_rate} is never reached.")
  every_eval, every_save = config.eval_every_steps, config.checkpoint_every_steps
  if (config.keep_best_checkpoints and every_save < steps_total
      and math.lcm(every_eval, every_save) >= steps_total):
    out.append(f"keep_best_checkpoints={config.keep_best_checkpoints} ranks checkpoints by "
               f"evaluation accuracy, but no checkpoint (every {every_save} steps) falls on an "
               f"evaluation (every {every_eval}) before the last step: only the final "
               "checkpoint can be kept as best. Make checkpoint_every_steps a multiple of "
               "eval_every_steps.")
  return out


def device_memory_bytes() -> int | None:
  """Memory of one device: the accelerator's limit, or the host's RAM for the CPU backend."""
  # A local device: another process's devices have no memory stats here.
  stats = jax.local_devices()[0].memory_stats() or {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return None


def check_memory(config: config_dict.ConfigDict, settings: RunSettings, num_devices: int,
                 limit_bytes: int | None = None) -> None:
  """Refuses, before compiling, a run that cannot fit on a device.

  A lower bound of what one device holds (float32): parameters, their gradients and Adam's two
  moments for every seed (4 copies; the state is replicated), plus the logits of one batch shard
  and their gradient (2 x B/devices x T x V per seed). XLA needs more (activations, residuals),
  so a run refused here would certainly fail, after minutes of compiling; one that passes may
  still run out of memory.

  Args:
    config: the run config (num_seeds, batch_size).
    settings: its validated settings.
    num_devices: devices the batch is sharded over.
    limit_bytes: the device's memory (default: `device_memory_bytes()`; None: no check).

  Raises:
    ValueError: the bound exceeds the device, naming both and the fields to lower.
  """
  limit = device_memory_bytes() if limit_bytes is None else limit_bytes
  if limit is None:
    return
  abstract = nnx.eval_shape(lambda: models.build_model(
      settings.model, vocab_size=settings.vocab_size, rngs=nnx.Rngs(0)))
  num_params = sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
  state_bytes = 4 * 4 * num_params * config.num_seeds
  logits_bytes = (2 * 4 * config.num_seeds * (config.batch_size // num_devices)
                  * settings.seq_len * settings.vocab_size)
  if state_bytes + logits_bytes > limit:
    gib = 2.0 ** 30
    raise ValueError(
        f"model.name={config.model.name!r} with these sizes needs at least "
        f"{(state_bytes + logits_bytes) / gib:.1f} GiB on each device ({num_params:,} parameters "
        f"x 4 copies x {config.num_seeds} seed(s): {state_bytes / gib:.1f} GiB; logits and "
        f"their gradient: {logits_bytes / gib:.1f} GiB), more than the device's "
        f"{limit / gib:.1f} GiB: lower the model's widths, batch_size or num_seeds.")


def validate_run(config: config_dict.ConfigDict, num_devices: int = 1,
                 warn: bool = False) -> RunSettings:
  """Checks every field of a run config and returns the frozen settings.

  Args:
    config: the run config.
    num_devices: devices the batch is sharded over; batch sizes must divide evenly.
    warn: print `run_warnings` (settings that would partly take no effect) to stderr.

  Raises:
    ValueError: naming the first bad field, its value and what is allowed.
  """
  _check_finite(config)
  _check_int(config, "seed", 0)
  for name in ("num_seeds", "batch_size", "eval_every_steps", "eval_batch_size", "num_eval_batches",
               "checkpoint_every_steps", "keep_checkpoints", "log_every_steps"):
    _check_int(config, name, 1)
  for name in ("batch_size", "eval_batch_size"):
    if config[name] % num_devices:
      raise ValueError(
          f"{name}={config[name]}: must be divisible by the number of devices ({num_devices}), "
          f"e.g. {max(num_devices, config[name] // num_devices * num_devices)}.")
  _check_int(config, "num_train_steps", 0)
  _check_int(config, "keep_best_checkpoints", 0)
  host_memory.check(config.host_allocator)
  make_optimizer(config.optimizer, config.num_train_steps)  # Validates the optimizer group.
  _check_effective(config)

  task = task_settings(config.task)
  model = models.model_settings(config.model.name, **_fields(config.model))
  if isinstance(model, models.TransformerSettings) and model.max_len < task.seq_len:
    raise ValueError(
        f"model.max_len={model.max_len}: shorter than the task's sequence length "
        f"{task.seq_len}; must be >= {task.seq_len}.")
  if warn:
    for line in run_warnings(config):
      progress.note(f"WARNING: {line}")
  return RunSettings(task=task, model=model, vocab_size=task.vocab_size, seq_len=task.seq_len)


def learning_rate_schedule(opt: config_dict.ConfigDict, num_steps: int) -> optax.Schedule:
  if opt.schedule not in SCHEDULES:
    raise ValueError(f"optimizer.schedule={opt.schedule!r}: must be one of {SCHEDULES}.")
  if not opt.learning_rate > 0:
    raise ValueError(f"optimizer.learning_rate={opt.learning_rate!r}: must be > 0.")
  if not isinstance(opt.warmup_steps, int) or opt.warmup_steps < 0:
    raise ValueError(f"optimizer.warmup_steps={opt.warmup_steps!r}: must be an integer >= 0.")
  if not 0.0 <= opt.min_lr_ratio <= 1.0:
    raise ValueError(f"optimizer.min_lr_ratio={opt.min_lr_ratio!r}: must be in [0, 1].")
  peak = opt.learning_rate
  if opt.schedule == "constant":
    after = optax.constant_schedule(peak)
  else:
    decay_steps = max(num_steps - opt.warmup_steps, 1)
    after = optax.cosine_decay_schedule(peak, decay_steps, alpha=opt.min_lr_ratio)
  if opt.warmup_steps == 0:
    return after
  warmup = optax.linear_schedule(0.0, peak, opt.warmup_steps)
  return optax.join_schedules([warmup, after], [opt.warmup_steps])


def make_optimizer(opt: config_dict.ConfigDict, num_steps: int) -> optax.GradientTransformation:
  """optax chain: optional global-norm clipping, then the named optimizer on the schedule."""
  if opt.name not in OPTIMIZERS:
    raise ValueError(f"optimizer.name={opt.name!r}: must be one of {OPTIMIZERS}.")
  if opt.grad_clip_norm < 0:
    raise ValueError(f"optimizer.grad_clip_norm={opt.grad_clip_norm!r}: must be >= 0 (0 = off).")
  if opt.weight_decay < 0:
    raise ValueError(f"optimizer.weight_decay={opt.weight_decay!r}: must be >= 0.")
  if not 0.0 <= opt.momentum < 1.0:
    raise ValueError(f"optimizer.momentum={opt.momentum!r}: must be in [0, 1).")
  lr = learning_rate_schedule(opt, num_steps)
  if opt.name == "adam":
    base = optax.adam(lr)
  elif opt.name == "adamw":
    base = optax.adamw(lr, weight_decay=opt.weight_decay)
  elif opt.name == "sgd":
    base = optax.sgd(lr, momentum=opt.momentum)
  else:
    base = optax.rmsprop(lr, decay=opt.momentum)
  if opt.grad_clip_norm == 0:
    return base
  return optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), base)


@dataclasses.dataclass(frozen=True)
class Run:
  """What every program that trains or restores a run starts from (see `build_run`).

  Attributes:
    settings: the validated, frozen config.
    tx: the optimizer.
    seeds: the S seed ids `seed .. seed + num_seeds - 1`.
    keys: {'init', 'data', 'eval'}: key arrays [S], seed i's derived from `seed + i` alone.
    mesh: the 1-D data-parallel mesh of all devices.
    graphdef: the model's nnx graph definition (shared by the seeds).
    constants: the model's non-parameter variables (shared by the seeds, never trained).
    state: the initial TrainState, leaves [S, ...], replicated over `mesh`.
  """

  settings: RunSettings
  tx: optax.GradientTransformation
  seeds: tuple[int, ...]
  keys: dict[str, jax.Array]
  mesh: jax.sharding.Mesh
  graphdef: Any
  constants: Any
  state: steps.TrainState

  @property
  def num_params(self) -> int:
    """Parameters of one seed's model."""
    return sum(x.size for x in jax.tree.leaves(self.state.params)) // len(self.seeds)


def build_run(config: config_dict.ConfigDict, num_seeds: int | None = None) -> Run:
  """Validates `config` and builds its initial run: the one setup sequence.

  Args:
    config: a run config (see configs/).
    num_seeds: override of `config.num_seeds` (the benchmark's scaling runs); None: the config's.

  Raises:
    ValueError: a bad config field (before anything is compiled).
  """
  settings = validate_run(config, num_devices=jax.device_count())
  check_memory(config, settings, jax.device_count())
  num_seeds = config.num_seeds if num_seeds is None else num_seeds
  tx = make_optimizer(config.optimizer, config.num_train_steps)
  keys = steps.seed_keys(config.seed, num_seeds)
  mesh = steps.data_mesh()
  graphdef, constants, state = steps.init_state(settings.model, settings.vocab_size, tx,
                                                keys["init"])
  return Run(settings=settings, tx=tx, seeds=tuple(config.seed + k for k in range(num_seeds)),
             keys=keys, mesh=mesh, graphdef=graphdef, constants=constants,
             state=steps.replicate(state, mesh))
