"""Model settings: the frozen dataclasses the modules understand (they never see a ConfigDict).

`seqresearch.models.model_settings(name, **fields)` is the one boundary from `config.model`;
`is_recurrent` (a class constant) tells the paths that differ for recurrent models.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp

from seqresearch.models.cells import CELLS

RECURRENT_CELLS = tuple(CELLS)
POS_ENCODINGS = ("sinusoidal", "learned", "none", "rope", "alibi")
WEIGHT_GRADS = ("auto", "autodiff", "batched")
ATTENTION = ("auto", "vmap", "chunked", "xla", "cudnn")
MLP = ("auto", "autodiff", "custom_vjp")
# Mixed precision (`model.compute_dtype`): parameters and optimizer state stay float32; the
# matmuls and activations run in the compute dtype; the recurrent carry, softmax,
# normalisation, loss and metrics stay float32 (Micikevicius et al. 2018, "Mixed Precision
# Training", keep a float32 master copy of the weights and float32 reductions).
COMPUTE_DTYPES = ("float32", "bfloat16")

# What "auto" means per `jax.default_backend()`: the fastest form measured by
# scripts/bench.py (benchmarks/). Backends not listed use "cpu"'s choices.
RECURRENT_AUTO = {
    # Hoisting is slower on XLA:CPU: its four TxBxH projections are fresh memory every step.
    "cpu": dict(hoist_input=False, weight_grads="batched"),
    # Not measured (no GPU was lent to the benchmark): hoisting and one deep weight-gradient
    # matmul are what cuDNN's RNNs do; rerun scripts/bench.py on a GPU to confirm.
    "gpu": dict(hoist_input=True, weight_grads="batched"),
}
TRANSFORMER_AUTO = {
    "cpu": dict(attention="chunked", mlp="custom_vjp"),
    # Not measured here; 'cudnn' computes in bfloat16, so it is an explicit choice only.
    "gpu": dict(attention="xla", mlp="autodiff"),
}


def check_positive(obj: object, *names: str) -> None:
  """Raises ValueError naming `model.<name>` unless each field is an integer >= 1."""
  for name in names:
    value = getattr(obj, name)
    # bool is an int subclass: `unroll=True` would silently mean a full unroll.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"model.{name}={value!r}: must be an integer >= 1.")


def check_compute_dtype(obj: object) -> None:
  """Raises ValueError naming `model.compute_dtype` unless it is one of COMPUTE_DTYPES."""
  value = getattr(obj, "compute_dtype")
  if value not in COMPUTE_DTYPES:
    raise ValueError(f"model.compute_dtype={value!r}: must be one of {COMPUTE_DTYPES}.")


def compute_dtype_of(obj: object) -> jax.typing.DTypeLike:
  """The jnp dtype of a settings object's `compute_dtype` (float32 when it has none)."""
  return jnp.dtype(getattr(obj, "compute_dtype", "float32"))


def check_bool(obj: object, *names: str) -> None:
  """Raises ValueError naming `model.<name>` unless each field is a bool."""
  for name in names:
    value = getattr(obj, name)
    if not isinstance(value, bool):
      raise ValueError(f"model.{name}={value!r}: must be true or false.")


@dataclasses.dataclass(frozen=True)
class RecurrentSettings:
  """A stack of scanned recurrent layers between a token embedding and a vocabulary readout.

  Attributes:
    cell: 'rnn' (Elman, tanh), 'lstm' or 'gru'.
    embed_dim: width of the token embedding fed to the first layer.
    hidden_size: width of every recurrent layer's state.
    num_layers: number of stacked recurrent layers.
    forget_bias: LSTM forget-gate bias at initialisation (ignored by rnn/gru and by chrono).
    lstm_init: 'default' (constant forget bias) or 'chrono' (Tallec & Ollivier 2018).
    chrono_max_len: T_max of chrono init: forget bias ~ log(U[1, T_max - 1]), input bias = -forget.
    hoist_input: compute the input projection for all steps as one matmul before the scan
      (True) or inside each scan step (False); 'auto': the backend's faster one (see
      RECURRENT_AUTO). Same result; speed differs per backend. The strings 'true' / 'false'
      (what a command-line override of the 'auto' field gives) mean True / False.
    unroll: `jax.lax.scan` unroll factor.
    weight_grads: 'autodiff' (JAX differentiates the scan: the weight gradients accumulate
      step by step inside the backward scan), 'batched' (a custom VJP forms them after the
      backward scan, one (T*B)-deep matmul each) or 'auto' (the backend's faster one). Same
      gradients up to float rounding.
    compute_dtype: 'float32' or 'bfloat16' (mixed precision): the dtype of the matmul
      operands (the input, recurrent and readout projections; products summed in float32).
      Parameters, optimizer state, the carry (c, h), the gate nonlinearities, the custom
      VJP's residuals and weight gradients, the logits, loss and metrics stay float32.
  """

  is_recurrent: ClassVar[bool] = True
  final_norm: ClassVar[bool] = False  # RecurrentLM: no LayerNorm before the readout

  cell: Literal["rnn", "lstm", "gru"] = "lstm"
  embed_dim: int = 64
  hidden_size: int = 128
  num_layers: int = 1
  forget_bias: float = 1.0
  lstm_init: Literal["default", "chrono"] = "default"
  chrono_max_len: int = 100
  hoist_input: bool | Literal["auto"] = "auto"
  unroll: int = 1
  weight_grads: Literal["auto", "autodiff", "batched"] = "auto"
  compute_dtype: Literal["float32", "bfloat16"] = "float32"

  def __post_init__(self) -> None:
    check_compute_dtype(self)
    if self.cell not in RECURRENT_CELLS:
      raise ValueError(f"model.cell={self.cell!r}: must be one of {RECURRENT_CELLS}.")
    check_positive(self, "embed_dim", "hidden_size", "num_layers", "unroll")
    if isinstance(self.hoist_input, str) and self.hoist_input.lower() in ("true", "false"):
      object.__setattr__(self, "hoist_input", self.hoist_input.lower() == "true")  # frozen
    if self.hoist_input != "auto":
      check_bool(self, "hoist_input")
    if self.weight_grads not in WEIGHT_GRADS:
      raise ValueError(
          f"model.weight_grads={self.weight_grads!r}: must be one of {WEIGHT_GRADS}.")
    if isinstance(self.forget_bias, bool) or not isinstance(self.forget_bias, (int, float)):
      raise ValueError(f"model.forget_bias={self.forget_bias!r}: must be a number.")
    if self.lstm_init not in ("default", "chrono"):
      raise ValueError(f"model.lstm_init={self.lstm_init!r}: must be 'default' or 'chrono'.")
    if not isinstance(self.chrono_max_len, int) or self.chrono_max_len < 3:
      raise ValueError(f"model.chrono_max_len={self.chrono_max_len!r}: must be an integer >= 3.")

  def resolved(self, backend: str | None = None) -> RecurrentSettings:
    """These settings with every 'auto' replaced by `backend`'s choice (default: JAX's)."""
    auto = RECURRENT_AUTO.get(backend or jax.default_backend(), RECURRENT_AUTO["cpu"])
    return dataclasses.replace(
        self, **{k: v for k, v in auto.items() if getattr(self, k) == "auto"})


@dataclasses.dataclass(frozen=True)
class TransformerSettings:
  """A decoder-style (causal by default) pre-LayerNorm Transformer.

  Attributes:
    d_model: model width D.
    num_heads: attention heads H; must divide d_model (head dim K = D / H).
    num_layers: number of blocks.
    mlp_dim: hidden width of each block's MLP.
    pos_encoding: where positions enter (POS_ENCODINGS). Added to the token embeddings:
      'sinusoidal' (Vaswani et al. 2017) or 'learned' (a max_len x D table). Inside every
      attention layer (`models.positional`): 'rope' (Su et al. 2021: q and k rotated per head
      by position-dependent angles, base 10000; needs an even head dim D / H) or 'alibi'
      (Press et al. 2022: -m_h * (t - s) added to head h's scores, slopes 2^(-8h/H)).
      'none': no positions (a causal model can still infer them).
    max_len: longest sequence the model accepts (every positional encoding checks it;
      'learned' allocates a table of this size). Extrapolation runs set it to the eval length.
    causal: position t attends to positions <= t only (False: bidirectional).
    attention: how the heads are computed ('auto': the backend's fastest, TRANSFORMER_AUTO):
      'vmap' (the reference: one head vmapped over heads and batch), 'chunked' (causal
      only: per query chunk against its key prefix, skipping the masked half), 'xla' /
      'cudnn' (`jax.nn.dot_product_attention`; 'cudnn' needs a GPU and computes in
      bfloat16). Asking for the attention weights always uses 'vmap'. 'auto' with
      causal=False never resolves to 'chunked' (it resolves to 'xla' instead).
    mlp: the MLP's gradient: 'autodiff', 'custom_vjp' (hand-written: fewer and smaller
      temporaries) or 'auto' (the backend's faster one). Same values.
    compute_dtype: 'float32' or 'bfloat16' (COMPUTE_DTYPES): the dtype of the matmuls and
      activations; parameters, attention logits and softmax, LayerNorm statistics, the
      residual stream and the returned logits stay float32.
  """

  is_recurrent: ClassVar[bool] = False

  d_model: int = 128
  num_heads: int = 4
  num_layers: int = 2
  mlp_dim: int = 512
  pos_encoding: Literal["sinusoidal", "learned", "none", "rope", "alibi"] = "sinusoidal"
  max_len: int = 2048
  causal: bool = True
  attention: Literal["auto", "vmap", "chunked", "xla", "cudnn"] = "auto"
  mlp: Literal["auto", "autodiff", "custom_vjp"] = "auto"
  compute_dtype: Literal["float32", "bfloat16"] = "float32"

  def __post_init__(self) -> None:
    check_compute_dtype(self)
    if self.mlp not in MLP:
      raise ValueError(f"model.mlp={self.mlp!r}: must be one of {MLP}.")
    if self.attention not in ATTENTION:
      raise ValueError(f"model.attention={self.attention!r}: must be one of {ATTENTION}.")
    check_positive(self, "d_model", "num_heads", "num_layers", "mlp_dim", "max_len")
    check_bool(self, "causal")
    if self.d_model % self.num_heads:
      raise ValueError(
          f"model.num_heads={self.num_heads}: must divide model.d_model={self.d_model} "
          f"(allowed: {[h for h in range(1, self.d_model + 1) if self.d_model % h == 0]}).")
    if self.pos_encoding not in POS_ENCODINGS:
      raise ValueError(f"model.pos_encoding={self.pos_encoding!r}: must be one of {POS_ENCODINGS}.")
    if self.pos_encoding == "rope" and (self.d_model // self.num_heads) % 2:
      raise ValueError(
          f"model.pos_encoding='rope': needs an even head dim, but model.d_model / "
          f"model.num_heads = {self.d_model}/{self.num_heads} = {self.d_model // self.num_heads}; "
          "choose an even ratio or another pos_encoding.")
    if self.attention == "chunked" and not self.causal:
      raise ValueError("model.attention='chunked': computes causal attention only, but "
                       "model.causal=False; use 'auto', 'vmap' or 'xla'.")

  @property
  def attention_window(self) -> int | None:
    """Keys a query may attend to, itself included (None: every earlier one)."""
    return None

  def resolved(self, backend: str | None = None) -> TransformerSettings:
    """These settings with 'auto' replaced by `backend`'s choice (default: JAX's)."""
    auto = dict(TRANSFORMER_AUTO.get(backend or jax.default_backend(), TRANSFORMER_AUTO["cpu"]))
    if not self.causal and auto["attention"] == "chunked":  # causal only: nothing to skip
      auto["attention"] = "xla"
    return dataclasses.replace(
        self, **{k: v for k, v in auto.items() if getattr(self, k) == "auto"})

