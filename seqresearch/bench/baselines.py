"""The implementations compared: ours (and its variants) and the Flax, jax.nn and PyTorch ones.

Every implementation is a token language model of the same shape, so the numbers compare the
layer that differs: Embed(V, E) -> body -> Linear(., V), trained with cross-entropy and Adam.
Bodies: our model from `seqresearch.models.MODELS` (one layer, the backend's resolved
defaults, or a variant that forces one fast path to its reference form); Flax's cells under
`lax.scan`; pre-LN blocks built on `nnx.MultiHeadAttention` or `jax.nn.dot_product_attention`;
the cuDNN LSTM of `jax.experimental.rnn` (GPU only); PyTorch's own layers (imported lazily).

Legend: B batch, T time (n), D width, E embedding, H hidden, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqresearch import models
from seqresearch.bench import harness
from seqresearch.bench.settings import BenchSettings
from seqresearch.models import registry


@dataclasses.dataclass(frozen=True)
class Impl:
  """One implementation of a model.

  Attributes:
    source: 'ours' or a baseline (a key of JAX_BASELINES, or 'torch').
    fields: ours only: settings fields forced to a value, as (field, value) pairs.
  """

  source: str
  fields: tuple[tuple[str, Any], ...] = ()

  @property
  def name(self) -> str:
    """The `impl` of the JSON rows: 'ours', 'ours[field=value,...]' or the baseline's name."""
    if not self.fields:
      return self.source
    return f"{self.source}[" + ",".join(f"{k}={v}" for k, v in self.fields) + "]"


def ours(**fields: Any) -> Impl:
  """Our model with `fields` of its settings forced (none: the backend's defaults)."""
  return Impl("ours", tuple(fields.items()))


# Each fast path of a settings class forced to its other form (against the CPU defaults);
# the last of each is the plain reference. Keyed by the settings class, so a model whose
# class has no fast paths has no variants.
_RECURRENT_VARIANTS = (ours(hoist_input=True), ours(weight_grads="autodiff"),
                       ours(weight_grads="autodiff", hoist_input=False))
VARIANTS: Mapping[type, tuple[Impl, ...]] = {
    models.RecurrentSettings: _RECURRENT_VARIANTS,
    models.TransformerSettings: (ours(mlp="autodiff"), ours(attention="xla"),
                                 ours(attention="vmap", mlp="autodiff")),
}

# Forms of a settings field that several model classes share, timed against each other for
# every model whose settings have the field (e.g. a linear recurrence run by `lax.scan`, T
# sequential steps, or by `lax.associative_scan`, O(log T) depth).
FIELD_FORMS: Mapping[str, tuple[Impl, ...]] = {
    "scan": (ours(scan="sequential"), ours(scan="associative")),
}

# External implementations of the same function as one of our models. A model without an
# entry has only its own rows.
BASELINES: Mapping[str, tuple[str, ...]] = {
    "rnn": ("flax_simple_cell", "torch"),
    "lstm": ("flax_optimized_lstm", "flax_lstm", "jax_cudnn_lstm", "torch"),
    "gru": ("flax_gru", "torch"),
    "transformer": ("flax_mha", "jax_dpa_xla", "jax_dpa_cudnn", "torch"),
}
GPU_ONLY = frozenset({"jax_cudnn_lstm", "jax_dpa_cudnn"})


def impls(model: str, s: BenchSettings) -> tuple[Impl, ...]:
  """What is timed for `model`: ours; its bfloat16 form (if s.bfloat16 and its settings have
  `compute_dtype`); the FIELD_FORMS of its fields (if s.variants or s.scan_forms); its
  variants (if s.variants); its baselines."""
  fields = registry.config_fields(model)
  out = [ours()]
  if s.bfloat16 and "compute_dtype" in fields:
    out.append(ours(compute_dtype="bfloat16"))
  if s.variants or s.scan_forms:
    out += [form for field, forms in FIELD_FORMS.items() if field in fields for form in forms]
  if s.variants:
    out += VARIANTS.get(registry.entry(model).settings, ())
  out += [Impl(b) for b in BASELINES.get(model, ()) if s.torch or b != "torch"]
  return tuple(out)


def size_fields(model: str, s: BenchSettings, length: int) -> dict[str, Any]:
  """The settings fields that give `model` the benchmark's shape: one layer of width D.

  A field is set only when the model's settings class has it (hidden_size or d_model = D,
  embed_dim = E, num_heads, mlp_dim, num_layers = 1, no positional encoding, max_len = n);
  other fields keep their defaults.
  """
  wanted = {"hidden_size": s.width, "d_model": s.width, "embed_dim": s.embed_dim,
            "num_heads": s.num_heads, "mlp_dim": s.mlp_dim, "num_layers": 1,
            "pos_encoding": "none", "max_len": max(length, 1)}
  allowed = set(registry.config_fields(model))
  return {k: v for k, v in wanted.items() if k in allowed}


class FlaxRecurrentLM(nnx.Module):
  """Embed(V, E) -> a Flax cell under `jax.lax.scan` -> Linear(H, V)."""

  def __init__(self, cell: nnx.Module, vocab: int, embed: int, hidden: int, *, rngs: nnx.Rngs):
    self.embedding = nnx.Embed(vocab, embed, rngs=rngs)
    self.cell = cell
    self.readout = nnx.Linear(hidden, vocab, rngs=rngs)
    self.hidden = hidden

  def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
    x_TxBxE = jnp.swapaxes(self.embedding(tokens_BxT), 0, 1)
    # The zero carry in the structure the cell uses ((c, h) or h); only its shapes are taken
    # from Flax's initialize_carry, which needs rngs (no key ops end up in the program).
    shapes = jax.eval_shape(lambda: self.cell.initialize_carry(
        (tokens_BxT.shape[0], x_TxBxE.shape[-1]), rngs=nnx.Rngs(0)))
    carry = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
    graphdef, state = nnx.split(self.cell)  # a pure body: merge inside, no module in the scan

    def body(carry, x_BxE):
      return nnx.merge(graphdef, state)(carry, x_BxE)

    _, y_TxBxH = jax.lax.scan(body, carry, x_TxBxE)
    return self.readout(jnp.swapaxes(y_TxBxH, 0, 1))


class CudnnLSTMLM(nnx.Module):
  """Embed(V, E) -> `jax.experimental.rnn.lstm` (cuDNN; GPU only) -> Linear(H, V)."""

  def __init__(self, vocab: int, embed: int, hidden: int, *, rngs: nnx.Rngs):
    from jax.experimental import rnn  # pylint: disable=g-import-not-at-top
    self.embedding = nnx.Embed(vocab, embed, rngs=rngs)
    self.weights = nnx.Param(rnn.init_lstm_weight(rngs.params(), embed, hidden, 1, False))
    self.readout = nnx.Linear(hidden, vocab, rngs=rngs)
    self.embed_dim, self.hidden = embed, hidden

  def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
    from jax.experimental import rnn  # pylint: disable=g-import-not-at-top
    b, t = tokens_BxT.shape
    h_1xBxH = jnp.zeros((1, b, self.hidden), jnp.float32)
    y_BxTxH, _, _ = rnn.lstm(self.embedding(tokens_BxT), h_1xBxH, h_1xBxH, self.weights[...],
                             jnp.full((b,), t, jnp.int32), self.embed_dim, self.hidden, 1,
                             0.0, False)
    return self.readout(y_BxTxH)


class BaselineBlockLM(nnx.Module):
  """Embed(V, D) -> pre-LN block (attention by `attention`, erf-GELU MLP) -> LN -> Linear(D, V).

  attention: 'flax_mha' (nnx.MultiHeadAttention with a causal mask), or 'xla' / 'cudnn'
  (a fused QKV projection, then `jax.nn.dot_product_attention(is_causal=True)`).
  """

  def __init__(self, attention: str, vocab: int, d: int, heads: int, mlp: int, *,
               rngs: nnx.Rngs):
    self.attention, self.heads = attention, heads
    self.embedding = nnx.Embed(vocab, d, rngs=rngs)
    self.attn_norm, self.mlp_norm, self.final_norm = (nnx.LayerNorm(d, rngs=rngs)
                                                      for _ in range(3))
    if attention == "flax_mha":
      self.mha = nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs)
    else:
      self.qkv_proj = nnx.Linear(d, 3 * d, rngs=rngs)
      self.out_proj = nnx.Linear(d, d, rngs=rngs)
    self.mlp_in, self.mlp_out = nnx.Linear(d, mlp, rngs=rngs), nnx.Linear(mlp, d, rngs=rngs)
    self.readout = nnx.Linear(d, vocab, rngs=rngs)

  def _attend(self, x_BxTxD: jax.Array) -> jax.Array:
    b, t, d = x_BxTxD.shape
    if self.attention == "flax_mha":
      return self.mha(x_BxTxD, mask=nnx.make_causal_mask(jnp.ones((b, t))))
    q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = jnp.split(
        self.qkv_proj(x_BxTxD).reshape(b, t, 3 * self.heads, d // self.heads), 3, axis=2)
    if self.attention == "cudnn":  # cuDNN's fused attention takes 16-bit inputs only
      q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = (a.astype(jnp.bfloat16)
                                         for a in (q_BxTxHxK, k_BxTxHxK, v_BxTxHxK))
    out_BxTxHxK = jax.nn.dot_product_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK, is_causal=True,
                                               implementation=self.attention)
    return self.out_proj(out_BxTxHxK.astype(x_BxTxD.dtype).reshape(b, t, d))

  def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
    x_BxTxD = self.embedding(tokens_BxT)
    x_BxTxD = x_BxTxD + self._attend(self.attn_norm(x_BxTxD))
    f_BxTxF = jax.nn.gelu(self.mlp_in(self.mlp_norm(x_BxTxD)), approximate=False)
    x_BxTxD = x_BxTxD + self.mlp_out(f_BxTxF)
    return self.readout(self.final_norm(x_BxTxD))


_FLAX_CELLS = {"flax_simple_cell": nnx.SimpleCell, "flax_optimized_lstm": nnx.OptimizedLSTMCell,
               "flax_lstm": nnx.LSTMCell, "flax_gru": nnx.GRUCell}
_ATTENTION = {"flax_mha": "flax_mha", "jax_dpa_xla": "xla", "jax_dpa_cudnn": "cudnn"}
JAX_BASELINES = (*_FLAX_CELLS, "jax_cudnn_lstm", *_ATTENTION)


def build_jax_model(model: str, impl: Impl, s: BenchSettings, length: int,
                    key: jax.Array) -> nnx.Module:
  """The JAX module of `impl` for `model` at sequence length `length`.

  Raises:
    harness.Unavailable: a GPU-only implementation on another backend.
    ValueError: `impl` is not a JAX implementation.
  """
  rngs, v, d = nnx.Rngs(key), s.vocab_size, s.width
  if impl.source == "ours":
    settings = models.model_settings(model, **{**size_fields(model, s, length),
                                               **dict(impl.fields)})
    return models.build_model(settings, vocab_size=v, rngs=rngs)
  if impl.source in GPU_ONLY and jax.default_backend() != "gpu":
    raise harness.Unavailable("needs a GPU (cuDNN)")
  if impl.source in _FLAX_CELLS:
    cell = _FLAX_CELLS[impl.source](s.embed_dim, d, rngs=rngs)
    return FlaxRecurrentLM(cell, v, s.embed_dim, d, rngs=rngs)
  if impl.source == "jax_cudnn_lstm":
    return CudnnLSTMLM(v, s.embed_dim, d, rngs=rngs)
  if impl.source in _ATTENTION:
    return BaselineBlockLM(_ATTENTION[impl.source], v, d, s.num_heads, s.mlp_dim, rngs=rngs)
  raise ValueError(f"impl={impl.name!r}: not a JAX implementation; allowed: ours, "
                   f"{', '.join(JAX_BASELINES)}.")


def import_torch(threads: int) -> Any:
  """torch, set to `threads` intra-op threads; harness.Unavailable when not installed."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise harness.Unavailable(f"torch not importable ({e})") from None
  torch.set_num_threads(threads)
  return torch


def torch_version(s: BenchSettings) -> str:
  """PyTorch's version for the environment dict: 'not run' or 'unavailable' when so."""
  if not s.torch:
    return "not run"
  try:
    return import_torch(s.torch_threads).__version__
  except harness.Unavailable:
    return "unavailable"


def _torch_recurrent(layer: str) -> Callable[[Any, BenchSettings, int], tuple[list, Callable]]:
  def build(nn: Any, s: BenchSettings, length: int):
    del length
    layers = [nn.Embedding(s.vocab_size, s.embed_dim),
              getattr(nn, layer)(s.embed_dim, s.width, batch_first=True),
              nn.Linear(s.width, s.vocab_size)]
    return layers, lambda tokens: layers[2](layers[1](layers[0](tokens))[0])
  return build


def _torch_transformer(nn: Any, s: BenchSettings, length: int):
  layers = [nn.Embedding(s.vocab_size, s.width),
            nn.TransformerEncoderLayer(s.width, s.num_heads, s.mlp_dim, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True),
            nn.LayerNorm(s.width), nn.Linear(s.width, s.vocab_size)]
  mask = nn.Transformer.generate_square_subsequent_mask(length)
  return layers, lambda tokens: layers[3](layers[2](
      layers[1](layers[0](tokens), src_mask=mask, is_causal=True)))


_TORCH_BODIES = {"rnn": _torch_recurrent("RNN"), "lstm": _torch_recurrent("LSTM"),
                 "gru": _torch_recurrent("GRU"), "transformer": _torch_transformer}


def torch_runner(model: str, s: BenchSettings, tokens_BxT: np.ndarray,
                 targets_BxT: np.ndarray) -> harness.Runner:
  """PyTorch's own layer in the same LM, eager, Adam (foreach default), on the CPU."""
  torch = import_torch(s.torch_threads)
  if model not in _TORCH_BODIES:
    raise harness.Unavailable(f"no PyTorch counterpart of {model!r}")
  torch.manual_seed(0)
  layers, apply = _TORCH_BODIES[model](torch.nn, s, tokens_BxT.shape[1])
  net = torch.nn.ModuleList(layers)
  opt = torch.optim.Adam(net.parameters(), lr=1e-3)
  tokens = torch.tensor(tokens_BxT, dtype=torch.long)
  targets = torch.tensor(targets_BxT, dtype=torch.long).reshape(-1)

  def train_once() -> None:
    opt.zero_grad(set_to_none=True)
    logits = apply(tokens).reshape(-1, s.vocab_size)
    torch.nn.functional.cross_entropy(logits, targets).backward()
    opt.step()

  def forward(k: int) -> float:
    with torch.inference_mode():
      return harness.time_loop(lambda: apply(tokens), k, harness.no_sync)

  info = {"compile_s": 0.0, "peak_memory_bytes": None,
          "num_params": int(sum(p.numel() for p in net.parameters()))}
  return harness.Runner(train=lambda k: harness.time_loop(train_once, k, harness.no_sync),
                        forward=forward, info=info)
