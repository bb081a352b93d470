"""The one table of models: name -> settings class, module, config defaults, label, colour, family.

Every other list of models (the config argument's MODEL, the sweeps, the study's variants, the
benchmark's rows, the tests' parametrisations) derives from `MODELS`. Adding a model is one
module (its settings dataclass and LM) plus one entry here; it then trains from the CLI,
sweeps, and appears in the study and the benchmark.

The config group `config.model` of a model is its settings dataclass's fields at their
defaults (`model_config`), plus `name`; the dataclass docstring documents each field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from flax import nnx
from ml_collections import config_dict

from seqresearch.models.config import RecurrentSettings, TransformerSettings
from seqresearch.models.conv import ConvLayer, ConvSettings
from seqresearch.models.local_attention import LocalAttentionSettings
from seqresearch.models.lru import LRULayer, LRUSettings
from seqresearch.models.minrnn import MinRNNLayer, MinRNNSettings
from seqresearch.models.recurrent import RecurrentLM
from seqresearch.models.s6 import S6Layer, S6Settings
from seqresearch.models.transformer import TransformerLM

# Families group models in figures and tables: nonlinear recurrences, recurrences linear in
# the state (parallel scan), convolutions, attention. `settings.is_recurrent` (not the family
# string) decides code paths: it says the model evaluates step by step with a carry
# (`initial_state` / `apply_with_state`).
FAMILIES = ("recurrent", "linear_recurrence", "convolution", "attention")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  """One row of the model table.

  Attributes:
    settings: the frozen settings dataclass the module understands; its field defaults are
      the config defaults of `config.model`.
    fixed: settings fields that the name fixes (e.g. `cell='lstm'`); not in the config.
    lm: the nnx.Module class built as `lm(settings, vocab_size=V, rngs=rngs[, layer=layer])`;
      it maps int32 tokens_BxT to float32 logits_BxTxV and splits as
      `from_embeddings(embed(tokens))`.
    family: one of FAMILIES (grouping in the study and the benchmark).
    label: display name in tables and figures.
    color: matplotlib colour, the same in every figure.
    tiny: model fields of the seconds-long `tiny` variant.
    learning_rate: default peak learning rate of the task configs.
    warmup_steps: default linear warmup of the task configs.
    layer: for `lm=RecurrentLM`, the layer class it stacks (any `recurrent.ScanLayer`);
      None: the LM's own default.
  """

  settings: type
  fixed: Mapping[str, Any]
  lm: type
  family: str
  label: str
  color: str
  tiny: Mapping[str, Any]
  learning_rate: float = 3e-3
  warmup_steps: int = 0
  layer: type | None = None


_RECURRENT_TINY = MappingProxyType({"embed_dim": 8, "hidden_size": 16})


def _recurrent(cell: str, label: str, color: str) -> ModelEntry:
  return ModelEntry(settings=RecurrentSettings, fixed=MappingProxyType({"cell": cell}),
                    lm=RecurrentLM, family="recurrent", label=label, color=color,
                    tiny=_RECURRENT_TINY)


_NONE = MappingProxyType({})
_TRANSFORMER_TINY = MappingProxyType({"d_model": 16, "num_heads": 2, "mlp_dim": 32,
                                      "num_layers": 1, "max_len": 512})


def _min_rnn(cell: str, label: str, color: str) -> ModelEntry:
  return ModelEntry(settings=MinRNNSettings, fixed=MappingProxyType({"cell": cell}),
                    lm=RecurrentLM, layer=MinRNNLayer, family="linear_recurrence",
                    label=label, color=color, tiny=_RECURRENT_TINY)


MODELS: Mapping[str, ModelEntry] = MappingProxyType({
    "rnn": _recurrent("rnn", "Elman RNN", "tab:gray"),
    "lstm": _recurrent("lstm", "LSTM", "tab:blue"),
    "gru": _recurrent("gru", "GRU", "tab:green"),
    "lru": ModelEntry(
        settings=LRUSettings, fixed=_NONE, lm=RecurrentLM, layer=LRULayer,
        family="linear_recurrence", label="LRU", color="tab:purple",
        tiny=MappingProxyType({"d_model": 16, "state_size": 16, "num_layers": 2}),
        learning_rate=1e-3),
    "mingru": _min_rnn("mingru", "minGRU", "tab:olive"),
    "minlstm": _min_rnn("minlstm", "minLSTM", "tab:cyan"),
    "s6": ModelEntry(
        settings=S6Settings, fixed=_NONE, lm=RecurrentLM, layer=S6Layer,
        family="linear_recurrence", label="Mamba (S6)", color="tab:brown",
        tiny=MappingProxyType({"d_model": 16, "state_size": 4, "dt_rank": 2, "num_layers": 2}),
        learning_rate=1e-3),
    "conv": ModelEntry(
        settings=ConvSettings, fixed=_NONE, lm=RecurrentLM, layer=ConvLayer,
        family="convolution", label="Causal CNN", color="tab:pink",
        tiny=MappingProxyType({"d_model": 16, "kernel_size": 3, "num_layers": 3})),
    "transformer": ModelEntry(
        settings=TransformerSettings, fixed=_NONE, lm=TransformerLM,
        family="attention", label="Transformer", color="tab:red", tiny=_TRANSFORMER_TINY,
        learning_rate=1e-3, warmup_steps=100),
    "local_attention": ModelEntry(
        settings=LocalAttentionSettings, fixed=_NONE, lm=TransformerLM,
        family="attention", label="Local attention", color="tab:orange",
        tiny=MappingProxyType({**_TRANSFORMER_TINY, "window": 8}),
        learning_rate=1e-3, warmup_steps=100),
})
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def entry(name: str) -> ModelEntry:
  """The table row of model `name`.

  Raises:
    ValueError: `name` is not a model, naming the allowed ones.
  """
  if name not in MODELS:
    raise ValueError(f"model.name={name!r}: must be one of {MODEL_NAMES}.")
  return MODELS[name]


def names(family: str | None = None) -> tuple[str, ...]:
  """Model names in table order, optionally only those of one family."""
  return tuple(n for n, e in MODELS.items() if family is None or e.family == family)


def config_fields(name: str) -> tuple[str, ...]:
  """The settings fields of model `name` that `config.model` holds (all but the fixed ones)."""
  e = entry(name)
  return tuple(f.name for f in dataclasses.fields(e.settings) if f.name not in e.fixed)


def model_config(name: str) -> config_dict.ConfigDict:
  """`config.model` for model `name`: `name` plus every settings field at its default."""
  e = entry(name)
  defaults = e.settings(**e.fixed)
  group = config_dict.ConfigDict()
  group.name = name
  for field in config_fields(name):
    setattr(group, field, getattr(defaults, field))
  return group


def model_settings(name: str, **fields: object) -> Any:
  """Validated settings for model `name`.

  Args:
    name: a key of MODELS.
    **fields: the settings dataclass's fields except the ones the name fixes.

  Returns:
    `entry(name).settings(**fixed, **fields)`.

  Raises:
    ValueError: unknown name, unknown field, or a bad value (the dataclasses check those).
  """
  e = entry(name)
  allowed = config_fields(name)
  unknown = sorted(set(fields) - set(allowed))
  if unknown:
    fixed = [f for f in unknown if f in e.fixed]
    hint = f" ({', '.join(repr(f) for f in fixed)} chosen by model.name)" if fixed else ""
    raise ValueError(
        f"model.{unknown[0]}: unknown field{'s' if len(unknown) > 1 else ''} {unknown} for "
        f"model.name={name!r}{hint}; allowed fields: {allowed}.")
  return e.settings(**e.fixed, **fields)


def build_model(settings: Any, *, vocab_size: int, rngs: nnx.Rngs) -> nnx.Module:
  """Builds the module for `settings` (from `model_settings`) over a vocabulary of vocab_size.

  Raises:
    ValueError: vocab_size is not an integer >= 1.
    TypeError: `settings` is not the settings class of any model in the table.
  """
  if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
    raise ValueError(f"vocab_size={vocab_size!r}: must be an integer >= 1.")
  for e in MODELS.values():
    if type(settings) is e.settings:
      layer = {} if e.layer is None else {"layer": e.layer}
      return e.lm(settings, vocab_size=vocab_size, rngs=rngs, **layer)
  raise TypeError(f"settings of type {type(settings).__name__} belong to no model in the "
                  "table; build them with model_settings(name, **fields).")


def name_of(settings: Any) -> str:
  """The table name whose settings class and fixed fields match `settings`."""
  for name, e in MODELS.items():
    if type(settings) is e.settings and all(getattr(settings, k) == v for k, v in e.fixed.items()):
      return name
  raise TypeError(f"settings {settings!r} match no model in the table.")
