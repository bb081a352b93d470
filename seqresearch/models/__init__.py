"""Models: the one boundary from `config.model` to a module.

    settings = model_settings(config.model.name, **fields)   # validates, no JAX work
    model = build_model(settings, vocab_size=V, rngs=nnx.Rngs(key))

Every model maps int32 tokens_BxT to float32 logits_BxTxV, and splits as
`model(t) == model.from_embeddings(model.embed(t))` for gradient-path analyses.
"""

from __future__ import annotations

import dataclasses

from flax import nnx

from seqresearch.models.config import RECURRENT_CELLS, RecurrentSettings, TransformerSettings
from seqresearch.models.recurrent import RecurrentLM
from seqresearch.models.transformer import TransformerLM

__all__ = [
    "MODEL_NAMES", "RecurrentLM", "RecurrentSettings", "TransformerLM", "TransformerSettings",
    "build_model", "model_settings",
]

MODEL_NAMES = ("rnn", "lstm", "gru", "transformer")


def model_settings(name: str, **fields: object) -> RecurrentSettings | TransformerSettings:
  """Validated settings for model `name`.

  Args:
    name: one of MODEL_NAMES; 'rnn' / 'lstm' / 'gru' choose the recurrent cell.
    **fields: the settings dataclass's fields (for recurrent models, all but `cell`).

  Returns:
    RecurrentSettings(cell=name, **fields) or TransformerSettings(**fields).

  Raises:
    ValueError: unknown name, unknown field, or a bad value (the dataclasses check those).
  """
  if name in RECURRENT_CELLS:
    cls, fixed = RecurrentSettings, {"cell": name}
  elif name == "transformer":
    cls, fixed = TransformerSettings, {}
  else:
    raise ValueError(f"model.name={name!r}: must be one of {MODEL_NAMES}.")
  allowed = tuple(f.name for f in dataclasses.fields(cls) if f.name not in fixed)
  unknown = sorted(set(fields) - set(allowed))
  if unknown:
    hint = " ('cell' is chosen by model.name)" if "cell" in unknown else ""
    raise ValueError(
        f"model.{unknown[0]}: unknown field{'s' if len(unknown) > 1 else ''} {unknown} for "
        f"model.name={name!r}{hint}; allowed fields: {allowed}.")
  return cls(**fixed, **fields)


def build_model(settings: RecurrentSettings | TransformerSettings, *, vocab_size: int,
                rngs: nnx.Rngs) -> RecurrentLM | TransformerLM:
  """Builds the module for `settings` (from `model_settings`) over a vocabulary of vocab_size."""
  if not isinstance(vocab_size, int) or vocab_size < 1:
    raise ValueError(f"vocab_size={vocab_size!r}: must be an integer >= 1.")
  if isinstance(settings, RecurrentSettings):
    return RecurrentLM(settings, vocab_size=vocab_size, rngs=rngs)
  if isinstance(settings, TransformerSettings):
    return TransformerLM(settings, vocab_size=vocab_size, rngs=rngs)
  raise TypeError(f"settings must be RecurrentSettings or TransformerSettings, got "
                  f"{type(settings).__name__}; build it with model_settings(name, **fields).")
