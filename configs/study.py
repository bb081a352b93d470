"""The runs and analysis settings of the study "Why attention beats RNNs/LSTMs", per scale.

`scripts/report.py --scale=quick` runs every sweep named here that its experiments need
(experiments/*.py say which), then analyses them. One sweep can be run alone like any other:

  python scripts/sweep.py --config=configs/study.py:sweep=long_range_copy,scale=quick \
      --workdir=runs/study-quick/runs/long_range_copy --parallel=2

Sweep argument: sweep=NAME[,scale=smoke|quick|full]. A member's argument puts its model in
front (MODEL,sweep=NAME,scale=SCALE[,any.dotted.field=value]) and starts from the task's own
config file (configs/copy.py or configs/agreement.py), resized to the scale.

Scales:
  smoke  tiny models and tens of steps: the whole report in about two minutes (tests, CI).
  quick  the whole report in about 20 minutes on a 2-core CPU; shows each effect's direction.
  full   the sizes and budgets the conclusions should rest on; meant for an accelerator.
"""

import importlib.util
import os

from ml_collections import config_dict

from seqresearch import configlib
from seqresearch import models

TASK_FILES = {"copy": "copy.py", "agreement": "agreement.py"}
COPY_LENGTH = 10  # L of configs/copy.py: a copy example at delay T has distance T + L.
AGREEMENT_MAX_PREFIX = 4  # max_prefix of configs/agreement.py: adverbs before the subject.

# Model variants compared by the experiments: the model plus the fields that make the variant.
VARIANTS = {
    "rnn": {"model": "rnn"},
    "lstm": {"model": "lstm"},  # forget-gate bias 1 (the project default; Gers et al. 2000)
    "lstm_fb0": {"model": "lstm", "model.forget_bias": 0.0},  # the naive initialisation
    "lstm_chrono": {"model": "lstm", "model.lstm_init": "chrono"},  # Tallec & Ollivier 2018
    "gru": {"model": "gru"},
    "transformer": {"model": "transformer"},  # sinusoidal positions
    "transformer_learned": {"model": "transformer", "model.pos_encoding": "learned"},
    "transformer_nope": {"model": "transformer", "model.pos_encoding": "none"},
}

SCALES = {
    "smoke": {
        "train": {
            # Seeds per run, vmapped in one program (mean and 95% CI over them). Smoke runs are
            # almost all compile time, and one seed compiles 40% faster than three; their
            # intervals are then n/a.
            "num_seeds": 1,
            "batch_size": 16,  # training examples per step
            "eval_batch_size": 32,  # examples per evaluation batch
            "num_eval_batches": 1,  # evaluation batches (end of training only)
            # Training steps by task. Recurrent models take more, cheaper steps; agreement scores
            # one position per example (copy: ten), so it needs more of them.
            "recurrent_steps": {"copy": 20, "agreement": 20},  # rnn, lstm, gru
            "transformer_steps": {"copy": 20, "agreement": 20},
            "warmup_steps": 5,  # Transformer learning-rate warmup
            "recurrent": {"embed_dim": 8, "hidden_size": 16},
            "transformer": {"d_model": 16, "num_heads": 2, "mlp_dim": 32, "num_layers": 2},
        },
        "long_range": {
            "copy_variants": ("lstm", "transformer"),  # names in VARIANTS
            "copy_delays": (3, 8),  # one run per delay T; distance T + 10
            "agreement_variants": ("lstm", "transformer"),
            "agreement_distances": (7, 12),  # trained and evaluated over this range
            "agreement_max_nouns": 2,  # most intervening nouns (and attractors)
        },
        "extrapolation": {
            # Reuse the long_range_agreement runs (trained on its distances); this sweep adds
            # the variants they lack. "" trains every variant here on `task`.
            "reuse": "long_range_agreement",
            "variants": (),  # smoke: the reused runs only
            "eval_distances": (12, 48),  # up to 4x the longest trained distance
            "num_eval_batches": 1,  # evaluation batches (of eval_batch_size) per distance
        },
        "gradient_path": {"num_examples": 8},  # copy examples at the longest long_range delay
        "attention_maps": {
            "num_examples": 8,  # examples per probe batch
            "agreement_points": 2,  # distances probed across the agreement run's range
        },
        "parallelism": {
            "models": ("lstm", "transformer"),  # of rnn, lstm, gru, transformer
            "lengths": (16, 64),  # sequence lengths n to time
            "width": 16,  # recurrent hidden size and Transformer d_model
            "batch_size": 4,
            "repetitions": 2,  # timed calls per point (after one warm-up); the median is kept
            "max_dataflow_length": 64,  # dataflow depth is walked step by step: cap n there
        },
        "complexity": {
            "width": 16,  # d for the sweep over n
            "lengths": (8, 16, 32, 64, 128, 256, 512),  # n for the sweep over n
            "length": 64,  # n for the sweep over d
            "widths": (4, 8, 16, 32, 64),  # d for the sweep over d
            "crossover_widths": (8, 16),  # d at which the crossover n* is located
            "depth_lengths": (8, 16, 32),  # n for sequential and dataflow depth
        },
    },
    "quick": {
        "train": {
            "num_seeds": 3,
            "batch_size": 32,
            "eval_batch_size": 128,
            "num_eval_batches": 2,
            "recurrent_steps": {"copy": 600, "agreement": 1500},
            "transformer_steps": {"copy": 400, "agreement": 300},
            "warmup_steps": 30,
            "recurrent": {"embed_dim": 32, "hidden_size": 64},
            "transformer": {"d_model": 64, "num_heads": 4, "mlp_dim": 128, "num_layers": 2},
        },
        "long_range": {
            "copy_variants": ("rnn", "lstm", "lstm_chrono", "gru", "transformer"),
            "copy_delays": (10, 30, 60),
            "agreement_variants": ("rnn", "lstm", "gru", "transformer"),
            "agreement_distances": (10, 20),
            "agreement_max_nouns": 3,
        },
        "extrapolation": {
            # Agreement, reusing long_range_agreement's runs (distances 10 .. 20): the GRU and
            # the Transformer learn it within this budget, while on variable-delay copy
            # (distances 11 .. 40) the LSTM and the Transformer stayed below 0.4 accuracy.
            "reuse": "long_range_agreement",
            "variants": ("transformer_learned", "transformer_nope"),
            "eval_distances": (20, 40, 80),
            "num_eval_batches": 2,
        },
        "gradient_path": {"num_examples": 32},
        "attention_maps": {"num_examples": 32, "agreement_points": 3},
        "parallelism": {
            "models": ("rnn", "lstm", "gru", "transformer"),
            "lengths": (64, 256, 1024),
            "width": 64,
            "batch_size": 8,
            "repetitions": 3,
            "max_dataflow_length": 256,
        },
        "complexity": {
            "width": 64,
            "lengths": (16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
            "length": 256,
            "widths": (16, 32, 64, 128, 256, 512, 1024),
            "crossover_widths": (16, 32, 64, 128),
            "depth_lengths": (16, 32, 64, 128, 256),
        },
    },
    "full": {
        "train": {
            "num_seeds": 3,
            "batch_size": 64,
            "eval_batch_size": 256,
            "num_eval_batches": 4,
            "recurrent_steps": {"copy": 5000, "agreement": 5000},
            "transformer_steps": {"copy": 2000, "agreement": 2000},
            "warmup_steps": 100,
            "recurrent": {"embed_dim": 64, "hidden_size": 128},
            "transformer": {"d_model": 128, "num_heads": 4, "mlp_dim": 512, "num_layers": 2},
        },
        "long_range": {
            "copy_variants": ("rnn", "lstm", "lstm_fb0", "lstm_chrono", "gru", "transformer"),
            "copy_delays": (10, 30, 100, 300, 1000),
            "agreement_variants": ("rnn", "lstm", "gru", "transformer"),
            "agreement_distances": (10, 60),
            "agreement_max_nouns": 3,
        },
        "extrapolation": {
            # Variable-delay copy needs the Transformer to locate the delimiter and count from
            # it (about 1500 steps at d_model 128): affordable here, not at the quick scale.
            "reuse": "",
            "task": "copy",  # trained here, on distances train_distances
            "train_distances": (11, 50),  # delays 1 .. 40
            "variants": ("lstm", "gru", "transformer", "transformer_learned", "transformer_nope"),
            "eval_distances": (20, 50, 75, 100, 150, 200),
            "num_eval_batches": 4,
        },
        "gradient_path": {"num_examples": 128},
        "attention_maps": {"num_examples": 64, "agreement_points": 11},
        "parallelism": {
            "models": ("rnn", "lstm", "gru", "transformer"),
            "lengths": (128, 256, 512, 1024, 2048, 4096, 8192),
            "width": 128,
            "batch_size": 16,
            "repetitions": 5,
            "max_dataflow_length": 1024,
        },
        "complexity": {
            "width": 128,
            "lengths": (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384),
            "length": 512,
            "widths": (16, 32, 64, 128, 256, 512, 1024, 2048),
            "crossover_widths": (16, 32, 64, 128, 256, 512),
            "depth_lengths": (16, 32, 64, 128, 256, 512, 1024),
        },
    },
}

SWEEPS = ("long_range_copy", "long_range_agreement", "extrapolation")


def get_study(scale: str) -> config_dict.ConfigDict:
  """Everything the experiments read at `scale` (training sizes, grids, analysis settings)."""
  if scale not in SCALES:
    raise ValueError(f"scale={scale!r}: must be one of {tuple(SCALES)}.")
  study = config_dict.ConfigDict(SCALES[scale])
  study.lock()
  return study


def _parse(arg: str | None) -> tuple[str, dict[str, str], str, str]:
  parsed = configlib.parse_arg(arg, sweep=str, scale=str)
  name = parsed.options["sweep"] or ""
  if name not in SWEEPS:
    raise ValueError(f"config argument sweep={name!r}: must be one of {SWEEPS}.")
  scale = parsed.options["scale"] or "quick"
  get_study(scale)  # Validates the scale.
  return parsed.model, parsed.overrides, name, scale


def _task(sweep: str, scale: str) -> str:
  """The task a sweep trains on."""
  if sweep == "extrapolation":
    return _extrapolation_task(scale)[0]
  return "copy" if sweep == "long_range_copy" else "agreement"


def _extrapolation_task(scale: str) -> tuple[str, tuple[int, int], int]:
  """(task, trained distances, max_nouns) of the extrapolation runs."""
  ex, lr = SCALES[scale]["extrapolation"], SCALES[scale]["long_range"]
  if ex["reuse"] == "long_range_agreement":  # the same task as the runs it reuses
    return "agreement", lr["agreement_distances"], lr["agreement_max_nouns"]
  return ex["task"], ex["train_distances"], lr["agreement_max_nouns"]


def _task_module(task: str):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), TASK_FILES[task])
  spec = importlib.util.spec_from_file_location(f"study_{task}_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  model, options, name, scale = _parse(arg)
  train = SCALES[scale]["train"]
  task = _task(name, scale)
  config = _task_module(task).get_config(model)
  recurrent = models.entry(model).settings.is_recurrent
  config.num_seeds = train["num_seeds"]
  config.batch_size = train["batch_size"]
  config.eval_batch_size = train["eval_batch_size"]
  config.num_eval_batches = train["num_eval_batches"]
  config.num_train_steps = train["recurrent_steps" if recurrent else "transformer_steps"][task]
  # Evaluate (and checkpoint) at the end only: the analyses read the final model.
  config.eval_every_steps = config.checkpoint_every_steps = config.num_train_steps
  config.log_every_steps = max(1, min(50, config.num_train_steps // 4))
  if not recurrent:
    config.optimizer.warmup_steps = train["warmup_steps"]
  for field, value in train["recurrent" if recurrent else "transformer"].items():
    config.model[field] = value
  for path, value in options.items():
    configlib.apply_dotted(config, path, value)
  return config


def get_sweep(arg: str | None = None) -> list[dict]:
  """The runs of one sweep at one scale: {'model': ..., dotted field: value} per run."""
  _, _, name, scale = _parse(arg)
  s = SCALES[scale]
  if name == "long_range_copy":
    lr = s["long_range"]
    return [{**VARIANTS[v], **_chrono(v, d + 2 * COPY_LENGTH),
             "task.min_delay": d, "task.max_delay": d}
            for v in lr["copy_variants"] for d in lr["copy_delays"]]
  if name == "long_range_agreement":
    lr = s["long_range"]
    low, high = lr["agreement_distances"]
    nouns = lr["agreement_max_nouns"]
    return [{**VARIANTS[v], **_chrono(v, high + AGREEMENT_MAX_PREFIX + 1),
             "task.min_distance": low, "task.max_distance": high, "task.max_nouns": nouns,
             "task.max_attractors": nouns}
            for v in lr["agreement_variants"]]
  ex = s["extrapolation"]
  task_name, (low, high), nouns = _extrapolation_task(scale)
  if task_name == "copy":
    task = {"task.min_delay": low - COPY_LENGTH, "task.max_delay": high - COPY_LENGTH}
    longest = max(ex["eval_distances"]) + 2 * COPY_LENGTH  # delay + 2L
  else:
    task = {"task.min_distance": low, "task.max_distance": high, "task.max_nouns": nouns,
            "task.max_attractors": nouns}
    longest = max(ex["eval_distances"]) + AGREEMENT_MAX_PREFIX + 1  # prefix, distance, query
  # The Transformer's positions must cover the longest evaluation sequence.
  return [{**VARIANTS[v], **_chrono(v, longest),
           **({"model.max_len": longest} if VARIANTS[v]["model"] == "transformer" else {}),
           **task}
          for v in ex["variants"]]


def _chrono(variant: str, length: int) -> dict:
  """Chrono init's T_max: the longest dependency the run will see (Tallec & Ollivier 2018)."""
  return {"model.chrono_max_len": length} if variant == "lstm_chrono" else {}
