"""bfloat16 in the attention models: every matmul of the train step (forward and backward) on
bfloat16 operands, float32 where the convention keeps it, and every implementation close to
the float32 reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqresearch import models

IMPLEMENTATIONS = {"transformer": ("vmap", "chunked", "xla"),
                   "local_attention": ("vmap", "blocked", "xla")}


def _model(name: str, attention: str, compute_dtype: str, pos_encoding: str = "sinusoidal"):
  settings = models.model_settings(name, d_model=16, num_heads=2, num_layers=1, mlp_dim=32,
                                   max_len=32, attention=attention, pos_encoding=pos_encoding,
                                   compute_dtype=compute_dtype)
  return models.build_model(settings, vocab_size=7, rngs=nnx.Rngs(0))


def _dot_generals(jaxpr) -> list:
  """Every dot_general equation of a jaxpr, nested ones (vmap, custom_vjp, remat...) included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      found.append(eqn)
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else (param,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          found += _dot_generals(inner)
  return found


def _loss(model, tokens_BxT):
  return jax.nn.log_softmax(model(tokens_BxT)).mean()


@pytest.mark.parametrize("name", tuple(IMPLEMENTATIONS))
def test_bfloat16_train_step_multiplies_bfloat16_operands_only(name):
  tokens = jnp.zeros((2, 12), jnp.int32)
  for impl in IMPLEMENTATIONS[name]:
    for pe in ("sinusoidal", "alibi"):
      graph, state = nnx.split(_model(name, impl, "bfloat16", pe))
      grad = lambda s: jax.grad(lambda s: _loss(nnx.merge(graph, s), tokens))(s)  # noqa: E731
      dots = _dot_generals(jax.make_jaxpr(grad)(state).jaxpr)
      assert len(dots) >= 6, (impl, len(dots))
      for eqn in dots:
        operands = {str(v.aval.dtype) for v in eqn.invars}
        # bfloat16 operands, or a float32 cotangent that the BF16_BF16_F32 algorithm rounds.
        assert (operands == {"bfloat16"} or str(eqn.params["precision"]) == "BF16_BF16_F32"
                ), (impl, pe, operands, eqn.params["precision"])
      # The parameters (and so their gradients) stay float32.
      assert {str(x.dtype) for x in jax.tree.leaves(state)} == {"float32"}


# Every implementation of a whole model (10-17 CPU-s per model): the slow suite.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) for n in IMPLEMENTATIONS])
def test_every_implementation_in_bfloat16_is_close_to_float32(name):
  tokens = jax.random.randint(jax.random.key(0), (2, 20), 0, 7)
  reference = _model(name, "vmap", "float32")(tokens)
  scale = float(jnp.abs(reference).max())
  for impl in IMPLEMENTATIONS[name]:
    logits = _model(name, impl, "bfloat16")(tokens)
    assert logits.dtype == jnp.float32
    # bfloat16 keeps 8 bits of mantissa: a few parts in a thousand per matmul.
    err = float(jnp.abs(logits - reference).max())
    assert err < 0.02 * scale, (impl, err, scale)
    assert err > 0, impl  # it did compute in bfloat16
  _, weights = _model(name, "vmap", "bfloat16")(tokens, return_attention=True)
  assert weights[0].dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(weights[0].sum(-1)), 1.0, rtol=1e-5)


def test_bfloat16_forward_result_dtypes_are_what_the_docstrings_say():
  # Only the attention products and the readout ask for float32 results; the projections and
  # the MLP (nnx.Linear(dtype=bfloat16), no preferred_element_type) return bfloat16.
  for name in models.names("attention"):
    model = _model(name, "vmap", "bfloat16")
    graph, state = nnx.split(model)
    jaxpr = jax.make_jaxpr(lambda s: nnx.merge(graph, s)(jnp.zeros((2, 12), jnp.int32)))(state)
    outputs = [str(eqn.outvars[0].aval.dtype) for eqn in _dot_generals(jaxpr.jaxpr)]
    assert all(operand == "bfloat16" for eqn in _dot_generals(jaxpr.jaxpr)
               for operand in (str(v.aval.dtype) for v in eqn.invars)), name
    # One layer: QKV, output projection, two MLP matmuls in bfloat16; q·k, w·v and the
    # readout in float32.
    assert outputs.count("bfloat16") == 4 and outputs.count("float32") == 3, (name, outputs)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the docstrings name CPU only")
def test_a_bfloat16_dot_without_a_preferred_type_accumulates_in_float32_on_cpu():
  # 1 + 1024 * 2^-9 = 3: a bfloat16 accumulator would lose each 2^-9 against 1 (8 bits).
  a = jnp.asarray([1.0] + [2.0 ** -9] * 1024, jnp.bfloat16)
  out = jax.jit(lambda a: a @ jnp.ones_like(a))(a)
  assert out.dtype == jnp.bfloat16 and float(out) == 3.0
