"""Tests of seqresearch.analysis: FLOP counts, depths, gradient paths, attention mass, fits."""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqresearch.analysis import attention_mass, fits, flops, gradient_path
from seqresearch.analysis import layer_costs as lc
from seqresearch.models import build_model, model_settings
from seqresearch.tasks import copy as copy_task

f32 = jnp.float32


def _spec(*shape: int) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(shape, f32)


# ---------------------------------------------------------------- FLOP counting conventions


def test_plain_and_batched_matmul_counts_equal_2mkn():
  assert flops.count_flops(jnp.matmul, _spec(3, 5), _spec(5, 7)) == 2 * 3 * 5 * 7
  einsum = lambda a, b: jnp.einsum("bij,bjk->bik", a, b)  # noqa: E731
  assert flops.matmul_flops(einsum, _spec(4, 3, 5), _spec(4, 5, 7)) == 2 * 4 * 3 * 5 * 7


def test_elementwise_and_reduction_conventions():
  # tanh(a @ b + 1): matmul, then one add and one tanh per output element (3x7).
  fn = lambda a, b: jnp.tanh(a @ b + 1.0)  # noqa: E731
  count = flops.flop_count(fn, _spec(3, 5), _spec(5, 7))
  assert count.by_primitive == {"dot_general": 210, "add": 21, "tanh": 21}
  assert (count.total, count.matmul) == (252, 210)
  # exp, mul per element; the reduction per INPUT element: 3 * 20.
  assert flops.count_flops(lambda x: jnp.sum(jnp.exp(x) * 2.0), _spec(4, 5)) == 60
  # Integer index arithmetic and comparisons are not floating-point work.
  assert flops.count_flops(lambda i: (i + 1) * 3 > 4, jnp.arange(10)) == 0


def test_call_primitives_are_recursed_and_cond_takes_the_larger_branch():
  inner = jax.jit(lambda x: x * 2.0)
  fn = lambda x: jax.checkpoint(lambda y: inner(jax.nn.relu(y)))(x)  # noqa: E731
  assert flops.count_flops(fn, _spec(6)) == 12  # max (relu, a custom_jvp) + mul
  cheap, dear = (lambda z: z + 1.0), (lambda z: jnp.exp(z) * z)  # 3 and 6 FLOPs
  assert flops.count_flops(lambda x: jax.lax.cond(x[0] > 0, cheap, dear, x), _spec(3)) == 6


def test_while_loop_and_unknown_primitive_fail_loudly():
  loop = lambda x: jax.lax.while_loop(lambda c: c[0] < 10.0, lambda c: c * 2.0, x)  # noqa: E731
  with pytest.raises(ValueError, match="while"):
    flops.count_flops(loop, _spec(2))
  with pytest.raises(ValueError, match="while"):
    flops.sequential_depth(loop, _spec(2))
  with pytest.raises(ValueError, match="'sort'"):
    flops.count_flops(jnp.sort, _spec(8))
  assert flops.flop_count(jnp.sort, _spec(8), strict=False).uncounted == ("sort",)


# ---------------------------------------------------------------- the real layers


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("hoist_input", [False, True])
def test_recurrent_layer_matmul_flops_equal_analytic(cell, hoist_input):
  fn, args = lc.recurrent_layer_program(cell, 12, 8, batch=3, hoist_input=hoist_input)
  assert flops.matmul_flops(fn, *args) == lc.analytic_recurrent_matmul_flops(cell, 12, 8, 3)


def test_scan_is_counted_length_times_and_xla_cost_analysis_is_not():
  # Nothing outside the scan costs FLOPs, so n steps cost exactly n times one step.
  one = flops.count_flops(*lc._flatten(lc.recurrent_layer_program("rnn", 1, 8, batch=2)))
  fn, args = lc.recurrent_layer_program("rnn", 64, 8, batch=2)
  assert flops.count_flops(fn, *args) == 64 * one
  assert flops.matmul_flops(fn, *args) == 4 * 2 * 64 * 8 * 8
  # XLA counts the while-loop body once: its estimate for 64 steps stays near one step.
  # This is why the jaxpr counter exists.
  xla_64 = jax.jit(fn).lower(*args).compile().cost_analysis()["flops"]
  assert xla_64 < 2 * one < flops.count_flops(fn, *args) / 30


@pytest.mark.parametrize("n,num_heads", [(8, 1), (24, 4)])
def test_attention_layer_matmul_flops_equal_analytic(n, num_heads):
  fn, args = lc.attention_layer_program(n, 16, batch=2, num_heads=num_heads)
  assert flops.matmul_flops(fn, *args) == lc.analytic_attention_matmul_flops(n, 16, 2)
  assert flops.matmul_flops(fn, *args) == 2 * (8 * n * 16**2 + 4 * n**2 * 16)


def test_counter_agrees_with_xla_on_straight_line_code():
  # Without a loop XLA's estimate is trustworthy; the two conventions differ only in small
  # print (XLA also counts e.g. the mask's select), so they agree within a few percent.
  fn, args = lc.attention_layer_program(32, 16, batch=2, num_heads=4)
  xla = jax.jit(fn).lower(*args).compile().cost_analysis()["flops"]
  assert flops.count_flops(fn, *args) == pytest.approx(xla, rel=0.1)


def test_fitted_exponents_match_table_1():
  d, ns = 8, [512, 1024, 2048, 4096]
  att = [flops.matmul_flops(*lc._flatten(lc.attention_layer_program(n, d))) for n in ns]
  assert fits.fit_power_law(ns, att)[0] == pytest.approx(2.0, abs=0.03)  # n >> d: n² term
  rec = [flops.matmul_flops(*lc._flatten(lc.recurrent_layer_program("lstm", n, d)))
         for n in [16, 32, 64]]
  assert fits.fit_power_law([16, 32, 64], rec)[0] == pytest.approx(1.0, abs=1e-9)
  ds = [8, 16, 32, 64]
  rec_d = [flops.matmul_flops(*lc._flatten(lc.recurrent_layer_program("gru", 8, d)))
           for d in ds]
  exponent, prefactor = fits.fit_power_law(ds, rec_d)
  assert exponent == pytest.approx(2.0, abs=1e-9)
  assert prefactor == pytest.approx(4 * 3 * 8, rel=1e-9)  # 4·G·n


def test_crossover():
  assert lc.crossover_n(64, "lstm") == 128.0  # (G - 2)·d
  assert lc.crossover_n(64, "lstm", include_projections=False) == 256.0  # G·d
  assert lc.crossover_n(64, "rnn") == 0.0  # attention costs more at every n
  # Counted on the traced layers: the first integer above (G - 2)·d.
  assert lc.counted_crossover_n(16, "lstm") == 33


@pytest.mark.parametrize("name,fields", [
    ("rnn", dict(embed_dim=8, hidden_size=8)),
    ("lstm", dict(embed_dim=8, hidden_size=16, num_layers=2, hoist_input=True)),
    ("gru", dict(embed_dim=8, hidden_size=8)),
    ("transformer", dict(d_model=8, num_heads=2, mlp_dim=16, max_len=16)),
])
def test_training_step_counts_strictly_and_backward_matmuls_are_twice_forward(name, fields):
  # Every primitive of a real forward + backward pass has a rule (strict mode), and the
  # backward pass does exactly two matmuls (input and weight gradient) per forward matmul.
  model = build_model(model_settings(name, **fields), vocab_size=10, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  forward = lambda p, tok: nnx.merge(graphdef, p)(tok)  # noqa: E731
  loss = lambda p, tok: gradient_path.cross_entropy(  # noqa: E731
      forward(p, tok).reshape(-1, 10), tok.reshape(-1)).mean()
  tokens_BxT = jnp.zeros((2, 12), jnp.int32)
  step = flops.flop_count(jax.value_and_grad(loss), params, tokens_BxT)
  assert step.uncounted == () and step.total > step.matmul
  assert step.matmul == 3 * flops.matmul_flops(forward, params, tokens_BxT)
  expected_depth = 1 if name == "transformer" else 2 * 12 * fields.get("num_layers", 1)
  assert flops.sequential_depth(jax.value_and_grad(loss), params, tokens_BxT) == expected_depth


# ---------------------------------------------------------------- sequential depth


def test_sequential_depth_is_n_for_a_scan_and_1_for_attention():
  for n in (5, 17):
    assert flops.sequential_depth(*lc._flatten(lc.recurrent_layer_program("lstm", n, 4))) == n
  for n in (8, 64):
    assert flops.sequential_depth(*lc._flatten(lc.attention_layer_program(n, 8))) == 1

  def nested_then_flat(x):
    inner = lambda c, _: (c * 2.0, None)  # noqa: E731
    outer = lambda c, _: (jax.lax.scan(inner, c, None, length=4)[0], None)  # noqa: E731
    x = jax.lax.scan(outer, x, None, length=3)[0]
    return jax.lax.scan(inner, x, None, length=5)[0]

  assert flops.sequential_depth(nested_then_flat, _spec(2)) == 3 * 4 + 5


def test_dataflow_depth_constant_for_attention_linear_for_scan_log_for_associative_scan():
  att = [flops.dataflow_depth(*lc._flatten(lc.attention_layer_program(n, 8))) for n in (8, 64)]
  assert att[0] == att[1]
  rnn = [flops.dataflow_depth(*lc._flatten(lc.recurrent_layer_program("rnn", n, 4)))
         for n in (10, 20, 30)]
  assert rnn[2] - rnn[1] == rnn[1] - rnn[0] > 0
  linear_scan = lambda x: jax.lax.scan(lambda c, xt: (c * 0.5 + xt, c), 0.0, x)[1]  # noqa: E731
  assoc = lambda x: jax.lax.associative_scan(jnp.add, x)  # noqa: E731
  assert flops.dataflow_depth(linear_scan, _spec(1024)) >= 1024
  tree = [flops.dataflow_depth(assoc, _spec(n)) for n in (64, 128, 256, 1024)]
  per_level = tree[1] - tree[0]  # doubling n adds one level of the tree
  assert per_level > 0 and tree == [tree[0] + i * per_level for i in (0, 1, 2, 4)]


# ---------------------------------------------------------------- gradient path


class LinearRNN(nnx.Module):
  """h_t = w·h_{t-1} + x_t with scalar w; embedding = token value, logits = h (V = 1)."""

  def __init__(self, w: float):
    self.w = nnx.Param(jnp.asarray(w, f32))

  def embed(self, tokens_BxT: jax.Array) -> jax.Array:
    return tokens_BxT.astype(f32)[..., None]

  def from_embeddings(self, x_BxTx1: jax.Array) -> jax.Array:
    step = lambda h_B, x_B: (self.w[...] * h_B + x_B,) * 2  # noqa: E731
    _, h_TxB = jax.lax.scan(step, jnp.zeros(x_BxTx1.shape[0], f32), x_BxTx1[..., 0].T)
    return h_TxB.T[..., None]


def _read_h(logits_BxV: jax.Array, targets_B: jax.Array) -> jax.Array:
  return logits_BxV[:, 0]  # loss = h_t itself


@pytest.mark.parametrize("w", [0.9, -0.8])
def test_linear_rnn_gradient_is_w_to_the_k(w):
  model, t = LinearRNN(w), 20
  tokens_BxT = jnp.arange(2 * t, dtype=jnp.int32).reshape(2, t) % 5
  positions_B = np.array([t - 1, t - 6])
  g_BxTx1 = gradient_path.embedding_gradients(model, tokens_BxT, positions_B, np.zeros(2),
                                              loss_fn=_read_h)
  # Causal: nothing after the scored position; exactly w^(t-s) at and before it.
  np.testing.assert_array_equal(np.asarray(g_BxTx1)[1, t - 5:, 0], 0.0)
  np.testing.assert_allclose(np.asarray(g_BxTx1)[1, :t - 5, 0], w ** np.arange(t - 6, -1, -1),
                             rtol=1e-5)
  norms_K = gradient_path.gradient_norm_by_distance(
      model, tokens_BxT, positions_B, np.zeros(2), num_lags=t + 2, loss_fn=_read_h)
  k_K = np.arange(t + 2)
  np.testing.assert_allclose(norms_K[:t], abs(w) ** k_K[:t], rtol=1e-5)
  assert np.isnan(norms_K[t:]).all()  # no example reaches back that far
  assert gradient_path.fit_decay_rate(k_K, norms_K) == pytest.approx(math.log(abs(w)), abs=1e-5)


@pytest.mark.parametrize("name,fields", [
    ("lstm", dict(embed_dim=8, hidden_size=8)),
    ("transformer", dict(d_model=8, num_heads=2, num_layers=1, mlp_dim=16, max_len=32)),
])
def test_gradient_path_on_a_copy_batch(name, fields):
  settings = copy_task.CopySettings(num_symbols=4, copy_length=3, min_delay=4, max_delay=7)
  batch = settings.make_batch(jax.random.key(0), 6)
  model = build_model(model_settings(name, **fields), vocab_size=settings.vocab_size,
                      rngs=nnx.Rngs(0))
  pos_B, targets_B, dist_B = gradient_path.scored_positions(batch)
  np.testing.assert_array_equal(pos_B, dist_B)  # copy: first recall reads position 0
  g_BxTxE = np.asarray(gradient_path.embedding_gradients(model, batch.inputs, pos_B, targets_B))
  after_BxT = np.arange(settings.seq_len)[None, :] > pos_B[:, None]
  assert np.all(g_BxTxE[after_BxT] == 0.0)  # causal by gradient
  norms_K = gradient_path.gradient_norm_by_distance(model, batch.inputs, pos_B, targets_B)
  assert norms_K.shape == (pos_B.max() + 1,) and np.all(np.isfinite(norms_K))
  by_distance = gradient_path.source_gradient_norm(model, batch)
  assert sorted(by_distance) == sorted(set(dist_B.tolist()))
  src_norms = np.linalg.norm(g_BxTxE[np.arange(6), pos_B - dist_B], axis=-1)
  for d, value in by_distance.items():
    assert value == pytest.approx(src_norms[dist_B == d].mean(), rel=1e-6)


# ---------------------------------------------------------------- attention mass


def _hand_built_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Causal uniform weights, except scored rows that put a chosen mass on their source."""
  b, h, t = 2, 2, 6
  w = np.tril(np.ones((t, t))) / np.arange(1, t + 1)[:, None]
  w_BxHxTxT = np.broadcast_to(w, (b, h, t, t)).copy()
  scored, distance = np.zeros((b, t)), np.zeros((b, t), np.int64)
  # (example, query, distance, mass per head)
  rows = [(0, 4, 3, (0.9, 0.25)), (0, 5, 3, (0.7, 0.15)), (1, 5, 5, (0.5, 0.1))]
  for ex, q, dist, masses in rows:
    scored[ex, q], distance[ex, q] = 1.0, dist
    for head, mass in enumerate(masses):
      row = np.full(t, (1.0 - mass) / q)  # the rest spread over the q other causal keys
      row[q + 1:], row[q - dist] = 0.0, mass
      w_BxHxTxT[ex, head, q] = row
  return w_BxHxTxT, scored, distance


def test_mass_on_source_returns_the_planted_mass_per_distance():
  w_BxHxTxT, scored_BxT, distance_BxT = _hand_built_weights()
  np.testing.assert_allclose(w_BxHxTxT.sum(-1), 1.0)
  by_distance = attention_mass.mass_on_source(w_BxHxTxT, scored_BxT, distance_BxT)
  assert sorted(by_distance) == [3, 5]
  np.testing.assert_allclose(by_distance[3], [0.8, 0.2], rtol=1e-12)
  np.testing.assert_allclose(by_distance[5], [0.5, 0.1], rtol=1e-12)
  layers = attention_mass.mass_on_source_by_layer(
      [w_BxHxTxT, w_BxHxTxT[:, ::-1]], scored_BxT, distance_BxT)
  assert layers[(1, 0)] == pytest.approx({3: 0.2, 5: 0.1})
  assert layers[(0, 0)] == pytest.approx({3: 0.8, 5: 0.5})
  mass_BxHxQ = attention_mass.mass_at(w_BxHxTxT, [[4, 5], [5, 5]], [[1, 2], [0, 1]])
  np.testing.assert_allclose(mass_BxHxQ[0], [[0.9, 0.7], [0.25, 0.15]])
  np.testing.assert_allclose(mass_BxHxQ[1, 0], [0.5, 0.1])  # key 1 gets (1 - 0.5) / 5
  assert attention_mass.uniform_mass(scored_BxT, distance_BxT) == pytest.approx(
      {3: (1 / 5 + 1 / 6) / 2, 5: 1 / 6})
  distance_BxT[1, 5] = 6  # source before the sequence start
  with pytest.raises(ValueError, match="distance 6"):
    attention_mass.mass_on_source(w_BxHxTxT, scored_BxT, distance_BxT)


def test_future_mass_is_zero_for_the_causal_transformer():
  w_BxHxTxT, _, _ = _hand_built_weights()
  assert attention_mass.future_mass(w_BxHxTxT) == 0.0
  w_BxHxTxT[1, 1, 2, 4] = 0.3
  assert attention_mass.future_mass(w_BxHxTxT) == pytest.approx(0.3)
  model = build_model(model_settings("transformer", d_model=8, num_heads=2, num_layers=2,
                                     mlp_dim=16, max_len=16),
                      vocab_size=5, rngs=nnx.Rngs(1))
  tokens_BxT = jax.random.randint(jax.random.key(2), (2, 12), 0, 5)
  _, weights = nnx.jit(lambda m, t: m(t, return_attention=True))(model, tokens_BxT)
  assert [attention_mass.future_mass(w) for w in weights] == [0.0, 0.0]


def test_plot_attention_writes_a_png(tmp_path):
  w_BxHxTxT, _, _ = _hand_built_weights()
  path = attention_mass.plot_attention(w_BxHxTxT[0, 0], range(6), str(tmp_path / "a/w.png"),
                                       title="layer 0 head 0")
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(path) > 1000
  with pytest.raises(ValueError, match="square"):
    attention_mass.plot_attention(np.ones((3, 4)), range(3), str(tmp_path / "b.png"))


# ---------------------------------------------------------------- fits


def test_t_confidence_interval_matches_the_table():
  # Printed t tables: t_{0.975} = 12.706 (1 dof), 2.776 (4 dof), 2.042 (30 dof).
  assert fits.t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-4)
  assert fits.t_quantile(0.975, 30) == pytest.approx(2.0423, abs=1e-4)
  mean, half = fits.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
  assert mean == 3.0
  assert half == pytest.approx(2.7764451 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
  assert math.isnan(fits.mean_ci([2.0])[1])
  with pytest.raises(ValueError, match="non-finite"):
    fits.mean_ci([1.0, float("nan")])


def test_power_law_and_exponential_fits_recover_known_parameters():
  xs = np.array([2.0, 4.0, 8.0, 16.0])
  exponent, prefactor = fits.fit_power_law(xs, 3.0 * xs**2.5)
  assert (exponent, prefactor) == (pytest.approx(2.5), pytest.approx(3.0))
  ys = 2.0 * np.exp(-0.3 * xs)
  ys[1], ys[2] = 0.0, np.nan  # dropped, not fitted
  assert fits.fit_exponential(xs, ys) == (pytest.approx(-0.3), pytest.approx(2.0))
  with pytest.raises(ValueError, match="positive"):
    fits.fit_power_law([1.0, 2.0], [1.0, -1.0])


# ---------------------------------------------------------------- path length (Table 1)


def _concrete_program(program):
  from seqresearch.analysis import path_length
  fn, (params, x) = program
  return fn, path_length.concrete(params), jax.random.normal(jax.random.key(0), x.shape)


def test_path_length_grows_with_distance_through_a_recurrence_not_through_attention():
  from seqresearch.analysis import path_length
  ks = [1, 2, 4, 8, 15]
  rnn = path_length.path_length_by_distance(
      *_concrete_program(lc.recurrent_layer_program("rnn", 16, 4)), ks)
  attention = path_length.path_length_by_distance(
      *_concrete_program(lc.attention_layer_program(16, 4)), ks)
  # One cell step per position: the same number of operations added per step of k.
  steps = np.diff(rnn) / np.diff(ks)
  assert np.all(steps == steps[0]) and steps[0] >= 1
  assert len(set(attention)) == 1 and attention[0] < rnn[1]  # one hop at every distance
  # Causal: output 0 does not depend on input 5; an associative scan's path stays short.
  lengths = path_length.path_lengths(*_concrete_program(lc.attention_layer_program(16, 4)), 5)
  assert np.isinf(lengths[:5]).all() and np.isfinite(lengths[5:]).all()
  scan = lambda p, x: jax.lax.associative_scan(jnp.add, x, axis=1)  # noqa: E731
  assoc = path_length.path_length_by_distance(scan, {}, jnp.ones((1, 16, 2)), ks)
  assert max(assoc) < 2 * math.log2(16) + 2


def test_path_length_counts_a_matmul_once_and_moves_counts_with_the_data():
  from seqresearch.analysis import path_length
  x = jnp.ones((1, 4, 2))
  shift = lambda p, x: jnp.roll(x, 1, axis=1) @ p["w"]  # noqa: E731
  lengths = path_length.path_lengths(shift, {"w": jnp.ones((2, 2))}, x, 1)
  assert lengths.tolist() == [np.inf, np.inf, 1.0, np.inf]  # moved one position, one matmul
  cumulative = path_length.path_lengths(lambda p, x: jnp.cumsum(x, axis=1), {}, x, 1)
  assert cumulative.tolist() == [np.inf, 1.0, 1.0, 1.0]


def test_flop_counter_passes_over_prng_key_arrays():
  # numpy's issubdtype raised TypeError on key<fry> dtypes: a program that draws random
  # numbers (the benchmark's Flax baseline) could not be counted.
  from seqresearch.analysis import flops  # pylint: disable=g-import-not-at-top
  x = jnp.ones((4, 4))
  count = flops.matmul_flops(lambda key, x: jax.random.normal(key, x.shape) @ x,
                             jax.random.key(0), x)
  assert count == 2 * 4 * 4 * 4


def test_uniform_mass_of_a_local_window_head():
  # A content-blind head of window r spreads over min(t+1, r) keys and cannot reach d >= r;
  # with the full-attention chance level, local attention looked better than chance.
  from seqresearch.analysis import attention_mass  # pylint: disable=g-import-not-at-top
  scored = np.zeros((1, 12), np.float32)
  distance = np.zeros((1, 12), np.int32)
  scored[0, [9, 11]] = 1.0
  distance[0, 9], distance[0, 11] = 2, 6
  full = attention_mass.uniform_mass(scored, distance)
  local = attention_mass.uniform_mass(scored, distance, window=4)
  assert full == pytest.approx({2: 1 / 10, 6: 1 / 12})
  assert local == pytest.approx({2: 1 / 4, 6: 0.0})
