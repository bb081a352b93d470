"""Recurrent language models: a stack of layers scanned over time between an embedding and
a readout. The LM takes any layer with the `ScanLayer` interface; `RecurrentLayer` is the
nonlinear one (a fused-gate cell from `cells` scanned by `scans`).

Legend:
  B batch, T time, V vocabulary, E embedding width, I a layer's input width,
  H a layer's output (state) width.

Mixed precision (`settings.compute_dtype`, see `seqresearch.models.precision`): parameters
and the embedding table stay float32; each layer casts what its matmuls read to the compute
dtype and keeps its carry float32; the readout reads bfloat16 operands but sums in float32,
so the logits handed to the loss are float32 whatever the compute dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from seqresearch.models.cells import CELLS, Carry, ElmanCell, GRUCell, LSTMCell, RecurrentCell
from seqresearch.models import precision
from seqresearch.models.config import RecurrentSettings, compute_dtype_of
from seqresearch.models.scans import ScanParams, scan_autodiff, scan_batched

__all__ = ["CELLS", "ElmanCell", "GRUCell", "LSTMCell", "RecurrentCell", "RecurrentLM",
           "RecurrentLayer", "ScanLayer"]

# A model state is a tuple of one carry per layer.
State = tuple[Carry, ...]


class ScanLayer(Protocol):
  """What `RecurrentLM` needs of a layer, built as `layer(settings, in_features, l, rngs=rngs)`
  for layer l = 0, 1, ... of the stack.

  Attributes:
    out_features: H, the width of the layer's output.
  """

  out_features: int

  def initial_carry(self, batch_size: int) -> Carry:
    """The carry before step 0 (a pytree of float32 or complex64 arrays with batch axis 0)."""

  def scan(self, x_TxBxI: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    """Runs over all T steps from `carry`: (y_TxBxH, carry after the last step), causal."""


class RecurrentLayer(nnx.Module):
  """One cell scanned over time; batch-major API, time-major scan inside.

  How the scan runs (same numbers, different speed) comes from the settings, "auto" resolved
  for `jax.default_backend()` when the layer is built: `hoist_input`, `unroll` and
  `weight_grads` ('autodiff' or 'batched', see `seqresearch.models.scans`). The matmuls run
  in `compute_dtype` (inputs and float32 weights cast at use, float32 sums); the carry, the
  gates and the outputs y (the hidden states) are float32.
  """

  def __init__(self, settings: RecurrentSettings, in_features: int, layer_index: int = 0, *,
               rngs: nnx.Rngs):
    del layer_index  # every layer of the stack is alike
    resolved = settings.resolved()
    self.hoist_input = resolved.hoist_input
    self.unroll = resolved.unroll
    self.weight_grads = resolved.weight_grads
    self.out_features = settings.hidden_size
    self.compute_dtype = compute_dtype_of(settings).name
    self.cell = CELLS[settings.cell](in_features, settings.hidden_size, rngs=rngs,
                                     compute_dtype=self.compute_dtype)
    if isinstance(self.cell, LSTMCell):
      self.cell.init_gate_biases(
          forget_bias=settings.forget_bias, lstm_init=settings.lstm_init,
          chrono_max_len=settings.chrono_max_len, key=rngs.params())

  def initial_carry(self, batch_size: int) -> Carry:
    """The cell's zero carry (float32): lstm (c_BxH, h_BxH), rnn and gru h_BxH."""
    return self.cell.initial_carry(batch_size)

  def scan(self, x_TxBxI: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    """`__call__` on time-major arrays (stacked layers stay time-major: no transposes)."""
    cell = self.cell
    p = ScanParams(w_ih=cell.input_proj.kernel[...], b=cell.input_proj.bias[...],
                   w_hh=cell.recurrent_proj.kernel[...], extra=cell.extra_params())
    carry = jax.tree.map(lambda a: a.astype(jnp.float32), carry)
    scan = scan_batched if self.weight_grads == "batched" else scan_autodiff
    # The scans run their matmuls in the dtype of x (see seqresearch.models.scans).
    return scan(type(cell), self.hoist_input, self.unroll, p, carry,
                x_TxBxI.astype(self.compute_dtype))

  def __call__(self, x_BxTxI: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    """Runs the cell over all T steps from `carry`.

    Args:
      x_BxTxI: layer inputs.
      carry: the cell's carry before step 0 (see the cell's `initial_carry`).

    Returns:
      (y_BxTxH, final carry): the hidden state after every step, and the carry after the
      last step (feed it back in to continue the sequence in the next chunk).
    """
    y_TxBxH, carry = self.scan(jnp.swapaxes(x_BxTxI, 0, 1), carry)  # scan walks axis 0
    return jnp.swapaxes(y_TxBxH, 0, 1), carry


class RecurrentLM(nnx.Module):
  """Embed(V, E) -> num_layers scanned layers -> [LayerNorm] -> Linear(H, V).

  Any layer class with the `ScanLayer` interface works (the recurrent cells, linear
  recurrences on `jax.lax.associative_scan`, causal convolutions): the first layer reads
  E = settings.embed_dim features, each next one the previous one's `out_features`. A final
  LayerNorm is applied when the settings class says `final_norm` (residual-stream models).

  The token embedding is initialised N(0, 1) (PyTorch's `nn.Embedding` default) so the
  first layer's lecun-normal input projection sees unit-variance inputs.

  `settings.compute_dtype` (default float32 when the settings lack it): the layers' and the
  readout's matmul operands; the embeddings, the final LayerNorm (statistics and output) and
  the logits are float32.
  """

  def __init__(self, settings: Any, *, vocab_size: int, rngs: nnx.Rngs,
               layer: Callable[..., ScanLayer] = RecurrentLayer):
    self.settings = settings
    self.compute_dtype = compute_dtype_of(settings).name
    self.embedding = nnx.Embed(
        vocab_size, settings.embed_dim,
        embedding_init=nnx.initializers.normal(1.0), rngs=rngs)
    layers, width = [], settings.embed_dim
    for _ in range(settings.num_layers):
      layers.append(layer(settings, width, len(layers), rngs=rngs))
      width = layers[-1].out_features
    self.layers = nnx.List(layers)
    self.final_norm = nnx.LayerNorm(width, rngs=rngs) if settings.final_norm else None
    self.readout = nnx.Linear(width, vocab_size, rngs=rngs)

  def initial_state(self, batch_size: int) -> State:
    """Zero state: a tuple with one carry per layer (lstm (c_BxH, h_BxH), rnn/gru h_BxH)."""
    return tuple(layer.initial_carry(batch_size) for layer in self.layers)

  def embed(self, tokens_BxT: jax.Array) -> jax.Array:
    """Token embeddings x_BxTxE (float32)."""
    return self.embedding(tokens_BxT)

  def from_embeddings_with_state(self, x_BxTxE: jax.Array,
                                 state: State) -> tuple[jax.Array, State]:
    """Args: x_BxTxE embeddings, state from `initial_state` or a previous chunk.

    Returns:
      (logits_BxTxV float32, new state after the last step).
    """
    # Time-major inside: the TxBxH states (and their gradients) are never transposed; only
    # the narrow embeddings and logits are.
    h_TxBxH = jnp.swapaxes(x_BxTxE, 0, 1)
    new_state = []
    for layer, carry in zip(self.layers, state, strict=True):
      h_TxBxH, carry = layer.scan(h_TxBxH, carry)
      new_state.append(carry)
    if self.final_norm is not None:
      h_TxBxH = self.final_norm(h_TxBxH)
    # bfloat16 operands, float32 sums: the logits are float32 for the loss and the metrics.
    logits_TxBxV = precision.dense(self.readout, h_TxBxH, self.compute_dtype)
    logits_BxTxV = jnp.swapaxes(logits_TxBxV, 0, 1)
    return logits_BxTxV, tuple(new_state)

  def from_embeddings(self, x_BxTxE: jax.Array) -> jax.Array:
    """logits_BxTxV from embeddings x_BxTxE, starting from the zero state."""
    return self.from_embeddings_with_state(x_BxTxE, self.initial_state(x_BxTxE.shape[0]))[0]

  def apply_with_state(self, tokens_BxT: jax.Array, state: State) -> tuple[jax.Array, State]:
    """Chunked evaluation: (logits_BxTxV, new state) continuing from `state`."""
    return self.from_embeddings_with_state(self.embed(tokens_BxT), state)

  def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
    """logits_BxTxV (float32) for int32 tokens_BxT, starting from the zero state."""
    return self.from_embeddings(self.embed(tokens_BxT))
