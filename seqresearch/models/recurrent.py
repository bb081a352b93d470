"""Recurrent language models: fused-gate cells scanned over time with `jax.lax.scan`.

Legend:
  B batch, T time, V vocabulary, E embedding width, I a layer's input width,
  H hidden (state) width, G number of fused gates (rnn 1, lstm 4, gru 3).

Each cell owns one input projection `Linear(I, G*H)` (holding the bias) and one recurrent
projection `Linear(H, G*H, use_bias=False)`, so a step is two matmuls whatever the cell.
The gate blocks along the G*H axis are, in order: rnn (candidate), lstm (i, f, g, o) as in
Flax's `nnx.LSTMCell`, gru (r, z, n) as in Flax's `nnx.GRUCell`. Carries are float32.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqresearch.models.config import RecurrentSettings

# LSTM carry is (c, h); rnn and gru carry h. A model state is a tuple of one carry per layer.
Carry = Any
State = tuple[Carry, ...]


def _gatewise_orthogonal(num_gates: int) -> nnx.Initializer:
  """Initialiser for a fused recurrent kernel HxGH: one orthogonal HxH block per gate.

  A single orthogonal HxGH matrix would shrink each gate's block by ~sqrt(G); per-gate
  blocks keep every gate's recurrent map norm-preserving at init, as Flax's cells do.
  """
  orthogonal = nnx.initializers.orthogonal()

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    in_features, out_features = shape
    keys = jax.random.split(key, num_gates)
    blocks = [orthogonal(k, (in_features, out_features // num_gates), dtype) for k in keys]
    return jnp.concatenate(blocks, axis=1)

  return init


class RecurrentCell(nnx.Module):
  """Shared parameters and plumbing of the three cells; subclasses define `step`.

  `step` takes the already projected input so a layer can hoist the projection out of the
  scan; `__call__(carry, x_BxI)` is one plain time step from the raw input.
  """

  num_gates: int = 1

  def __init__(self, in_features: int, hidden_size: int, *, rngs: nnx.Rngs):
    self.hidden_size = hidden_size
    g = self.num_gates
    self.input_proj = nnx.Linear(in_features, g * hidden_size, rngs=rngs)
    self.recurrent_proj = nnx.Linear(
        hidden_size, g * hidden_size, use_bias=False,
        kernel_init=_gatewise_orthogonal(g), rngs=rngs)

  def initial_carry(self, batch_size: int) -> Carry:
    """Zero carry: h_BxH (float32)."""
    return jnp.zeros((batch_size, self.hidden_size), jnp.float32)

  def project_input(self, x: jax.Array) -> jax.Array:
    """Input projection with bias: x_BxI -> xg_BxGH, or x_TxBxI -> xg_TxBxGH when hoisted."""
    return self.input_proj(x)

  def step(self, carry: Carry, xg_BxGH: jax.Array) -> tuple[Carry, jax.Array]:
    """One time step from the projected input. Returns (new carry, h_BxH)."""
    raise NotImplementedError

  def __call__(self, carry: Carry, x_BxI: jax.Array) -> tuple[Carry, jax.Array]:
    """One time step from the raw input x_BxI. Returns (new carry, h_BxH)."""
    return self.step(carry, self.project_input(x_BxI))


class ElmanCell(RecurrentCell):
  """Elman RNN: h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)."""

  num_gates = 1

  def step(self, h_BxH: jax.Array, xg_BxH: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Args: h_BxH previous state, xg_BxH projected input. Returns (h_BxH, h_BxH)."""
    h_BxH = jnp.tanh(xg_BxH.astype(jnp.float32) + self.recurrent_proj(h_BxH))
    return h_BxH, h_BxH


class LSTMCell(RecurrentCell):
  """LSTM (no peepholes): gates i, f, g, o; c_t = f*c + i*g, h_t = o*tanh(c_t).

  The forget bias lives in `input_proj.bias[H:2H]`; `RecurrentLayer` sets it at init.
  """

  num_gates = 4

  def initial_carry(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Zero carry (c_BxH, h_BxH), float32."""
    zeros_BxH = jnp.zeros((batch_size, self.hidden_size), jnp.float32)
    return zeros_BxH, zeros_BxH

  def step(self, carry: tuple[jax.Array, jax.Array],
           xg_Bx4H: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    """Args: carry (c_BxH, h_BxH), xg_Bx4H projected input. Returns ((c, h), h_BxH)."""
    c_BxH, h_BxH = carry
    z_Bx4H = xg_Bx4H.astype(jnp.float32) + self.recurrent_proj(h_BxH)
    i_BxH, f_BxH, g_BxH, o_BxH = jnp.split(z_Bx4H, 4, axis=-1)
    c_BxH = jax.nn.sigmoid(f_BxH) * c_BxH + jax.nn.sigmoid(i_BxH) * jnp.tanh(g_BxH)
    h_BxH = jax.nn.sigmoid(o_BxH) * jnp.tanh(c_BxH)
    return (c_BxH, h_BxH), h_BxH

  def init_gate_biases(self, *, forget_bias: float, lstm_init: str, chrono_max_len: int,
                       key: jax.Array) -> None:
    """Sets the input and forget gate biases (the other gates' biases stay zero).

    Args:
      forget_bias: constant forget bias for lstm_init='default'.
      lstm_init: 'default' or 'chrono' (Tallec & Ollivier 2018): b_f ~ log(U[1, T_max - 1]),
        b_i = -b_f, so the gates start with characteristic times spread up to T_max.
      chrono_max_len: T_max of chrono init.
      key: PRNG key for chrono init.
    """
    hid = self.hidden_size
    bias_4H = self.input_proj.bias[...]
    if lstm_init == "chrono":
      u_H = jax.random.uniform(key, (hid,), jnp.float32, 1.0, chrono_max_len - 1.0)
      b_f_H = jnp.log(u_H)
      bias_4H = bias_4H.at[:hid].set(-b_f_H).at[hid:2 * hid].set(b_f_H)
    else:
      bias_4H = bias_4H.at[hid:2 * hid].set(forget_bias)
    self.input_proj.bias[...] = bias_4H


class GRUCell(RecurrentCell):
  """GRU (Cho et al. 2014) in the PyTorch/Flax form, reset gate applied after W_hn:

    r = sigmoid(W_ir x + b_r + W_hr h),  z = sigmoid(W_iz x + b_z + W_hz h)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h

  This is exactly PyTorch's `nn.GRU` (its redundant b_hr, b_hz are folded into b_r, b_z)
  and exactly Flax's `nnx.GRUCell` when b_hn = 0 (Flax has no b_hn; ours starts at 0).
  """

  num_gates = 3

  def __init__(self, in_features: int, hidden_size: int, *, rngs: nnx.Rngs):
    super().__init__(in_features, hidden_size, rngs=rngs)
    # b_hn sits inside the reset gate, so it cannot be folded into the input bias.
    self.candidate_bias = nnx.Param(jnp.zeros((hidden_size,), jnp.float32))

  def step(self, h_BxH: jax.Array, xg_Bx3H: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Args: h_BxH previous state, xg_Bx3H projected input. Returns (h_BxH, h_BxH)."""
    xr_BxH, xz_BxH, xn_BxH = jnp.split(xg_Bx3H.astype(jnp.float32), 3, axis=-1)
    hr_BxH, hz_BxH, hn_BxH = jnp.split(self.recurrent_proj(h_BxH), 3, axis=-1)
    r_BxH = jax.nn.sigmoid(xr_BxH + hr_BxH)
    z_BxH = jax.nn.sigmoid(xz_BxH + hz_BxH)
    n_BxH = jnp.tanh(xn_BxH + r_BxH * (hn_BxH + self.candidate_bias[...]))
    h_BxH = (1.0 - z_BxH) * n_BxH + z_BxH * h_BxH
    return h_BxH, h_BxH


def make_cell(cell: str, in_features: int, hidden_size: int, *, rngs: nnx.Rngs) -> RecurrentCell:
  """The one place that maps a cell name to its class."""
  if cell == "rnn":
    return ElmanCell(in_features, hidden_size, rngs=rngs)
  if cell == "lstm":
    return LSTMCell(in_features, hidden_size, rngs=rngs)
  if cell == "gru":
    return GRUCell(in_features, hidden_size, rngs=rngs)
  raise ValueError(f"model.cell={cell!r}: must be one of ('rnn', 'lstm', 'gru').")


class RecurrentLayer(nnx.Module):
  """One cell scanned over time; batch-major API, time-major scan inside."""

  def __init__(self, settings: RecurrentSettings, in_features: int, *, rngs: nnx.Rngs):
    self.hoist_input = settings.hoist_input
    self.unroll = settings.unroll
    self.cell = make_cell(settings.cell, in_features, settings.hidden_size, rngs=rngs)
    if isinstance(self.cell, LSTMCell):
      self.cell.init_gate_biases(
          forget_bias=settings.forget_bias, lstm_init=settings.lstm_init,
          chrono_max_len=settings.chrono_max_len, key=rngs.params())

  def __call__(self, x_BxTxI: jax.Array, carry: Carry) -> tuple[jax.Array, Carry]:
    """Runs the cell over all T steps from `carry`.

    Args:
      x_BxTxI: layer inputs.
      carry: the cell's carry before step 0 (see the cell's `initial_carry`).

    Returns:
      (y_BxTxH, final carry): the hidden state after every step, and the carry after the
      last step (feed it back in to continue the sequence in the next chunk).
    """
    x_TxBxI = jnp.swapaxes(x_BxTxI, 0, 1)  # scan walks the leading axis
    # Hoisted: one (T*B)xI @ IxGH matmul up front; otherwise a BxI @ IxGH matmul per step.
    xs = self.cell.project_input(x_TxBxI) if self.hoist_input else x_TxBxI

    def body(carry: Carry, x_t: jax.Array) -> tuple[Carry, jax.Array]:
      xg_BxGH = x_t if self.hoist_input else self.cell.project_input(x_t)
      return self.cell.step(carry, xg_BxGH)

    carry = jax.tree.map(lambda a: a.astype(jnp.float32), carry)
    carry, y_TxBxH = jax.lax.scan(body, carry, xs, unroll=self.unroll)
    return jnp.swapaxes(y_TxBxH, 0, 1), carry


class RecurrentLM(nnx.Module):
  """Embed(V, E) -> num_layers scanned recurrent layers -> Linear(H, V).

  The token embedding is initialised N(0, 1) (PyTorch's `nn.Embedding` default) so the
  first layer's lecun-normal input projection sees unit-variance inputs.
  """

  def __init__(self, settings: RecurrentSettings, *, vocab_size: int, rngs: nnx.Rngs):
    self.settings = settings
    self.embedding = nnx.Embed(
        vocab_size, settings.embed_dim,
        embedding_init=nnx.initializers.normal(1.0), rngs=rngs)
    widths = [settings.embed_dim] + [settings.hidden_size] * (settings.num_layers - 1)
    self.layers = nnx.List([RecurrentLayer(settings, w, rngs=rngs) for w in widths])
    self.readout = nnx.Linear(settings.hidden_size, vocab_size, rngs=rngs)

  def initial_state(self, batch_size: int) -> State:
    """Zero state: a tuple with one float32 carry per layer (lstm (c_BxH, h_BxH), else h_BxH)."""
    return tuple(layer.cell.initial_carry(batch_size) for layer in self.layers)

  def embed(self, tokens_BxT: jax.Array) -> jax.Array:
    """Token embeddings x_BxTxE (float32)."""
    return self.embedding(tokens_BxT)

  def from_embeddings_with_state(self, x_BxTxE: jax.Array,
                                 state: State) -> tuple[jax.Array, State]:
    """Args: x_BxTxE embeddings, state from `initial_state` or a previous chunk.

    Returns:
      (logits_BxTxV float32, new state after the last step).
    """
    h_BxTxH = x_BxTxE
    new_state = []
    for layer, carry in zip(self.layers, state, strict=True):
      h_BxTxH, carry = layer(h_BxTxH, carry)
      new_state.append(carry)
    logits_BxTxV = self.readout(h_BxTxH).astype(jnp.float32)
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
