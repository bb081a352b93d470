"""Models: the one boundary from `config.model` to a module, through the table in `registry`.

    settings = model_settings(config.model.name, **fields)   # validates, no JAX work
    model = build_model(settings, vocab_size=V, rngs=nnx.Rngs(key))

Every model maps int32 tokens_BxT to float32 logits_BxTxV, and splits as
`model(t) == model.from_embeddings(model.embed(t))` for gradient-path analyses.
"""

from __future__ import annotations

from seqresearch.models.config import RecurrentSettings, TransformerSettings
from seqresearch.models.conv import ConvSettings
from seqresearch.models.local_attention import LocalAttentionSettings
from seqresearch.models.lru import LRUSettings
from seqresearch.models.minrnn import MinRNNSettings
from seqresearch.models.recurrent import RecurrentLM
from seqresearch.models.s6 import S6Settings
from seqresearch.models.registry import (MODEL_NAMES, MODELS, ModelEntry, build_model, entry,
                                         model_config, model_settings, name_of, names)
from seqresearch.models.transformer import TransformerLM

__all__ = [
    "ConvSettings", "LRUSettings", "LocalAttentionSettings", "MODELS", "MODEL_NAMES",
    "MinRNNSettings", "ModelEntry", "RecurrentLM", "RecurrentSettings", "S6Settings",
    "TransformerLM", "TransformerSettings", "build_model", "entry", "model_config",
    "model_settings", "name_of", "names",
]
