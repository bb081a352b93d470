"""The pure, jitted functions of a run: state init, the train step, evaluation over seeds.

A run trains S = `num_seeds` independent models in ONE compiled program: every leaf of the
train state has a leading seed axis [S, ...] and the step is `jax.vmap`-ed over it. Seed i uses
the keys of `seed + i`, so it is the same model as an S=1 run with that seed (tested).

Devices: the batch is sharded over a 1-D `Mesh` ('data') of all devices, the state is
replicated; XLA inserts the gradient all-reduce. The data are generated inside the step from
`fold_in(data_key, step)`, so each device draws only its shard and resume is exact.

Legend: S seeds, B batch, T time, V vocabulary.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from flax import struct
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from seqresearch import evaluation
from seqresearch import models
from seqresearch import tasks


def data_mesh() -> jax.sharding.Mesh:
  """All devices (of all processes) on one data-parallel axis."""
  # Auto axes: with Explicit axes (the new default) nnx.Embed raises a sharding type error.
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))


def seed_keys(seed: int, num_seeds: int) -> dict[str, jax.Array]:
  """{'init', 'data', 'eval'}: key arrays [S], seed i derived from `seed + i` alone."""
  keys = jnp.stack([jax.random.split(jax.random.key(seed + i), 3) for i in range(num_seeds)])
  return {"init": keys[:, 0], "data": keys[:, 1], "eval": keys[:, 2]}


@struct.dataclass
class MetricSums:
  """Running sums of the train metrics since the last log line (checkpointed: exact resume)."""

  loss: jax.Array  # float32 sum of the per-step mean losses
  accuracy: jax.Array  # float32 sum of the per-step accuracies
  grad_norm: jax.Array  # float32 sum of the per-step global gradient norms
  steps: jax.Array  # int32 number of steps summed

  @classmethod
  def zeros(cls) -> MetricSums:
    return cls(loss=jnp.zeros(()), accuracy=jnp.zeros(()), grad_norm=jnp.zeros(()),
               steps=jnp.zeros((), jnp.int32))


@struct.dataclass
class TrainState:
  """Everything a run checkpoints. In a run every leaf has a leading seed axis [S, ...].

  Attributes:
    step: int32, optimizer updates applied.
    params: the model's nnx.Param state.
    opt_state: the optax state of `params`.
    sums: running train-metric sums since the last log line.
    first_nonfinite_step: int32, the first step whose loss or gradient norm was NaN/Inf, or -1.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  sums: MetricSums
  first_nonfinite_step: jax.Array


def _single_state(model: nnx.Module, tx: optax.GradientTransformation):
  graphdef, params, constants = nnx.split(model, nnx.Param, ...)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                     sums=MetricSums.zeros(), first_nonfinite_step=jnp.full((), -1, jnp.int32))
  return graphdef, constants, state


def init_state(model_settings: Any, vocab_size: int, tx: optax.GradientTransformation,
               init_keys: jax.Array) -> tuple[Any, Any, TrainState]:
  """Builds S models and stacks them: (graphdef, constants, state with leading axis S).

  `constants` are the model's non-parameter variables (shared by the seeds, never trained).
  """
  singles = [_single_state(models.build_model(model_settings, vocab_size=vocab_size,
                                              rngs=nnx.Rngs(key)), tx) for key in init_keys]
  graphdef, constants, _ = singles[0]
  state = jax.tree.map(lambda *xs: jnp.stack(xs), *[s for _, _, s in singles])
  return graphdef, constants, state


def replicate(state: Any, mesh: jax.sharding.Mesh) -> Any:
  return jax.device_put(state, NamedSharding(mesh, P()))


def make_train_step(graphdef: Any, constants: Any, tx: optax.GradientTransformation,
                    task: Any, batch_size: int,
                    mesh: jax.sharding.Mesh) -> Callable[[Any, jax.Array], Any]:
  """Returns the jitted `train_step(state_S, data_keys_S) -> state_S`; the state is donated."""
  batch_sharding = NamedSharding(mesh, P("data"))

  def loss_fn(params, batch: tasks.Batch):
    logits_BxTxV = nnx.merge(graphdef, params, constants)(batch.inputs)
    loss, correct, scored = evaluation.loss_and_correct(logits_BxTxV, batch)
    return loss, correct.sum() / jnp.maximum(scored, 1.0)

  def one_seed(state: TrainState, data_key: jax.Array) -> TrainState:
    step = state.step
    batch = tasks.make_batch(jax.random.fold_in(data_key, step), task, batch_size)
    batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    sums, bad = state.sums, state.first_nonfinite_step
    return TrainState(
        step=step + 1,
        params=optax.apply_updates(state.params, updates),
        opt_state=opt_state,
        sums=MetricSums(loss=sums.loss + loss, accuracy=sums.accuracy + accuracy,
                        grad_norm=sums.grad_norm + grad_norm, steps=sums.steps + 1),
        first_nonfinite_step=jnp.where((bad < 0) & ~finite, step + 1, bad))

  return jax.jit(jax.vmap(one_seed), donate_argnums=0)


def make_evaluator(graphdef: Any, constants: Any, task: Any, batch_size: int,
                   num_batches: int, mesh: jax.sharding.Mesh
                   ) -> Callable[[Any, jax.Array], list[dict[str, Any]]]:
  """Returns `evaluate(params_S, eval_keys_S) -> [metrics of seed k]` on the fixed eval set."""
  num_buckets = task.max_distance + 1
  batch_sharding = NamedSharding(mesh, P("data"))

  def one_seed(params, eval_key, index):
    batch = tasks.make_batch(jax.random.fold_in(eval_key, index), task, batch_size)
    batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
    logits_BxTxV = nnx.merge(graphdef, params, constants)(batch.inputs)
    return evaluation.batch_sums(logits_BxTxV, batch, num_buckets)

  eval_sums = jax.jit(jax.vmap(one_seed, in_axes=(0, 0, None)))

  def evaluate(params, eval_keys) -> list[dict[str, Any]]:
    total = None
    for i in range(num_batches):
      sums = eval_sums(params, eval_keys, i)
      total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    total = jax.device_get(total)
    return [evaluation.summarize(jax.tree.map(lambda x: x[k], total), task)
            for k in range(len(eval_keys))]

  return evaluate


def reset_sums(state: TrainState) -> TrainState:
  """Zeroes the running train-metric sums, keeping their sharding (else the step retraces)."""
  return state.replace(sums=jax.tree.map(
      lambda x: jax.device_put(jnp.zeros_like(x), x.sharding), state.sums))
