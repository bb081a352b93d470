"""Restricted (local-window) causal self-attention: Vaswani et al. (2017), Table 1 row 4.

A Transformer whose every head lets query t attend to the r most recent positions only
(t - r < s <= t). Per layer: O(r * n * d) FLOPs and memory instead of O(n^2 * d), and a
maximum path length of O(n / r) layers instead of O(1). The model is `TransformerLM` with
these settings; the attention runs as `attention.local_causal_attention` (blocks of r
queries against 2r keys), never forming an n x n matrix.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax

from seqresearch.models.config import TransformerSettings, check_positive

LOCAL_ATTENTION = ("auto", "blocked", "vmap", "xla")


@dataclasses.dataclass(frozen=True)
class LocalAttentionSettings(TransformerSettings):
  """`TransformerSettings` (see there) with a window; always causal.

  Attributes:
    window: r, the keys a query attends to, itself included (r >= 1; r >= n is ordinary
      causal attention, computed in O(n * r)).
    attention: 'blocked' (O(n * r): blocks of r queries against 2r keys), 'vmap' (the
      reference: the n x n band-masked form) or 'xla' (`jax.nn.dot_product_attention` with
      its local window, n x n inside); 'auto' is 'blocked' on every backend.
  """

  window: int = 16
  attention: Literal["auto", "blocked", "vmap", "xla"] = "auto"

  def __post_init__(self) -> None:
    if self.attention not in LOCAL_ATTENTION:
      raise ValueError(f"model.attention={self.attention!r}: must be one of {LOCAL_ATTENTION} "
                       "for local attention.")
    if self.causal is not True:
      raise ValueError(f"model.causal={self.causal!r}: local attention is causal; must be true.")
    check_positive(self, "window")
    # The remaining fields as for the Transformer ('auto' and 'vmap' are valid there too).
    dataclasses.replace(TransformerSettings(), **{
        f.name: getattr(self, f.name) for f in dataclasses.fields(TransformerSettings)
        if f.name != "attention"})

  @property
  def attention_window(self) -> int:
    return self.window

  def resolved(self, backend: str | None = None) -> LocalAttentionSettings:
    """'auto' -> 'blocked' (whatever `backend`); the MLP's 'auto' as for the Transformer."""
    mlp = TransformerSettings(mlp=self.mlp).resolved(backend or jax.default_backend()).mlp
    return dataclasses.replace(
        self, attention="blocked" if self.attention == "auto" else self.attention, mlp=mlp)
