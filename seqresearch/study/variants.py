"""The variants the study compares: every model of the table, and explicit variants of one.

A variant is a model of `models.MODELS` plus the config fields that make it (e.g. the LSTM
with chrono initialisation). Its label, colour, family and whether it is recurrent come from
the model's table entry, so a model added to the table is a variant of the study with nothing
edited here. Variants of the same model share its colour and differ in line style.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from seqresearch import models


@dataclasses.dataclass(frozen=True)
class Variant:
  """One compared variant.

  Attributes:
    name: the variant's name in results and sweeps (a table model's own name, or e.g.
      'lstm_chrono').
    model: the table model it is a variant of.
    fields: dotted config fields (beyond `model`) that make the variant.
    note: what distinguishes it from the model ('' for the model itself).
  """

  name: str
  model: str
  fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  note: str = ""

  @property
  def entry(self) -> models.ModelEntry:
    return models.entry(self.model)

  @property
  def label(self) -> str:
    return f"{self.entry.label} ({self.note})" if self.note else self.entry.label

  @property
  def color(self) -> str:
    return self.entry.color

  @property
  def family(self) -> str:
    return self.entry.family

  @property
  def is_recurrent(self) -> bool:
    """On the essay's recurrent side: a recurrence over time (O(n) path), linear or not.

    Not `settings.is_recurrent` (a carry for step-by-step evaluation): the causal CNN has a
    carry too, but it is Table 1's convolution row, on neither side of the comparison.
    """
    return self.family in ("recurrent", "linear_recurrence")

  @property
  def is_attention(self) -> bool:
    """On the essay's self-attention side (O(1) path): full or local-window attention."""
    return self.family == "attention"

  def sweep_entry(self) -> dict[str, Any]:
    """{'model': ..., dotted field: value}: the variant as a sweep member's overrides."""
    return {"model": self.model, **self.fields}


# Variants of a table model that the study compares with the model itself.
EXTRA: Mapping[str, Variant] = MappingProxyType({
    # The naive LSTM initialisation (the table's LSTM has forget-gate bias 1; Gers et al. 2000).
    "lstm_fb0": Variant("lstm_fb0", "lstm", MappingProxyType({"model.forget_bias": 0.0}),
                        "forget bias 0"),
    # Chrono initialisation (Tallec & Ollivier 2018); T_max is set per sweep.
    "lstm_chrono": Variant("lstm_chrono", "lstm",
                           MappingProxyType({"model.lstm_init": "chrono"}), "chrono init"),
    "transformer_learned": Variant(
        "transformer_learned", "transformer",
        MappingProxyType({"model.pos_encoding": "learned"}), "learned positions"),
    "transformer_nope": Variant("transformer_nope", "transformer",
                                MappingProxyType({"model.pos_encoding": "none"}),
                                "no positions"),
    # Relative positions inside attention: rotary (Su et al. 2021) and linear biases (Press et
    # al. 2022, trained short to test long).
    "transformer_rope": Variant("transformer_rope", "transformer",
                                MappingProxyType({"model.pos_encoding": "rope"}), "RoPE"),
    "transformer_alibi": Variant("transformer_alibi", "transformer",
                                 MappingProxyType({"model.pos_encoding": "alibi"}), "ALiBi"),
})


def variant(name: str) -> Variant:
  """The variant `name`: a table model, or one of EXTRA.

  Raises:
    ValueError: no such model or variant, naming the allowed ones.
  """
  if name in models.names():
    return Variant(name, name)
  if name in EXTRA:
    return EXTRA[name]
  raise ValueError(f"variant {name!r}: must be a model of the table {models.names()} or one of "
                   f"{tuple(EXTRA)}.")


def table_models(which: str | Iterable[str]) -> tuple[str, ...]:
  """The table's models a scale compares, in table order.

  Args:
    which: 'all'; 'one_per_family' (the first of each family); or a sequence of table model
      names (a scale that compares a chosen subset: a model added to the table then takes
      part only where it is named).

  Raises:
    ValueError: another string, an empty sequence, or a name that is not a table model.
  """
  if isinstance(which, str):
    if which == "all":
      return models.names()
    if which == "one_per_family":
      families = dict.fromkeys(models.entry(n).family for n in models.names())
      return tuple(models.names(family)[0] for family in families)
    raise ValueError(f"models={which!r}: must be 'all', 'one_per_family' or a tuple of table "
                     f"models {models.names()}.")
  chosen = tuple(which)
  unknown = [n for n in chosen if n not in models.names()]
  if not chosen or unknown:
    raise ValueError(f"models={chosen!r}: {'empty' if not chosen else f'{unknown} not in the table'}"
                     f"; a tuple of table models {models.names()} is allowed.")
  return tuple(n for n in models.names() if n in chosen)


def ordered(names: Iterable[str]) -> list[str]:
  """Variant names in table order, each model followed by its EXTRA variants; unknown last."""
  rank = {}
  for name in models.names():
    rank[name] = len(rank)
    for extra in (v.name for v in EXTRA.values() if v.model == name):
      rank[extra] = len(rank)
  names = list(dict.fromkeys(names))
  return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def style(name: str) -> dict[str, Any]:
  """matplotlib line properties of a variant: its model's colour, a dash per variant."""
  v = variant(name)
  extras = [e.name for e in EXTRA.values() if e.model == v.model]
  dash = 1 + extras.index(name) if v.note else 0
  # One more than the most variants of one model (the Transformer's four encodings).
  linestyles = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))
  markers = ("o", "s", "^", "D", "v")
  return {"color": v.color, "ls": linestyles[dash % len(linestyles)],
          "marker": markers[dash % len(markers)], "label": v.label}


# Width fields of the model settings, by the convention the table's models share.
_WIDTH_FIELDS = ("embed_dim", "hidden_size", "d_model")


def sized_settings(name: str, width: int, max_len: int) -> Any:
  """Settings of table model `name` with one layer of width `width` (timing and FLOP counts).

  Fields set where the model's settings declare them: embed_dim, hidden_size and d_model =
  width; mlp_dim = 2·width; num_heads = max(1, width // 16); num_layers = 1; max_len.

  Raises:
    ValueError: the model declares none of the width fields (the study cannot size it).
  """
  fields = tuple(k for k in models.model_config(name) if k != "name")
  sizes = {f: width for f in _WIDTH_FIELDS}
  sizes.update(mlp_dim=2 * width, num_heads=max(1, width // 16), num_layers=1, max_len=max_len)
  chosen = {k: v for k, v in sizes.items() if k in fields}
  if not any(f in chosen for f in _WIDTH_FIELDS):
    raise ValueError(f"model {name!r} declares none of the width fields {_WIDTH_FIELDS}; "
                     f"its settings fields are {fields}.")
  return models.model_settings(name, **chosen)
