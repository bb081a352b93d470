"""Golden first-step metrics: the loss and gradient norm of step 1 of every model, seed 0.

These numbers pin down initialisation, the data stream and the loss together. When one moves:
if you changed any of them on purpose (a new init, a new generator, a new loss), rerun this
file with `GOLDEN_PRINT=1 pytest -s tests/test_golden.py`, check the new values make sense
(the loss of the order of ln V at initialisation) and paste them below, saying why in the commit message;
if you did not mean to change them, your change altered what every run computes: find out why.
A model new to the table is pinned here once its values are added (its own test file, one of
the three files a model needs, may instead hold the same check).
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np
import pytest

from seqresearch import build
from seqresearch import models
from seqresearch import steps

# configs/copy.py:MODEL,tiny at seed 0: (loss, grad_norm) of step 1, float32 on XLA:CPU.
GOLDEN = {
    "rnn": (2.6529424, 1.2254643),
    "lstm": (2.4231298, 0.7651301),
    "gru": (2.3528869, 0.86152494),
    "lru": (2.8657024, 1.6605664),
    "mingru": (2.5789609, 2.8091266),
    "minlstm": (2.3378587, 1.6336727),
    "s6": (2.644613, 1.2774832),
    "conv": (3.2873621, 2.7148371),
    "transformer": (3.5750446, 3.4013159),
    "local_attention": (3.5740709, 3.2241714),
}
# One step on another CPU's instruction set may round differently in the last bits.
RTOL = 1e-4


def _first_step(config) -> tuple[float, float]:
  run = build.build_run(config)
  step = steps.make_train_step(run.graphdef, run.constants, run.tx, run.settings.task,
                               config.batch_size, run.mesh)
  sums = jax.device_get(step(run.state, run.keys["data"]).sums)
  return float(sums.loss[0]), float(sums.grad_norm[0])


def test_golden_models_are_models_of_the_table():
  assert set(GOLDEN) <= set(models.MODEL_NAMES), set(GOLDEN) - set(models.MODEL_NAMES)


# The main job's LSTM and the Transformer by default; every model in the slow suite (each
# case compiles a model: 8-17 CPU-s).
@pytest.mark.parametrize("name", [n if n in ("lstm", "transformer")
                                  else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(GOLDEN)])
def test_first_step_loss_and_grad_norm_are_golden(name, tiny_config):
  config = tiny_config("configs/copy.py", f"{name},tiny")
  loss, grad_norm = _first_step(config)
  if os.environ.get("GOLDEN_PRINT"):
    print(f'    "{name}": ({loss:.8g}, {grad_norm:.8g}),')
  # At initialisation the loss is of the order of ln V (V = 10 for the tiny copy task).
  assert 0.5 * math.log(config.task.num_symbols + 2) < loss < 2 * math.log(
      config.task.num_symbols + 2)
  np.testing.assert_allclose((loss, grad_norm), GOLDEN[name], rtol=RTOL, err_msg=(
      f"{name}: step-1 metrics moved; see this file's docstring for what to do."))


@pytest.mark.slow  # trains the main job's config (17 CPU-s)
def test_main_job_config_is_deterministic_at_a_short_budget(tmp_path, tiny_config):
  """The README's main job, cut to 8 steps, gives the same numbers twice on one machine.

  (Across machines XLA:CPU may round differently with another instruction set, which is why
  the README quotes the main job as a range over seeds.)
  """
  from seqresearch import train  # pylint: disable=g-import-not-at-top
  summaries = []
  for attempt in ("a", "b"):
    config = tiny_config("configs/copy.py", "lstm")
    config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = 8
    config.num_eval_batches = 1
    summaries.append(train.train_and_evaluate(config, str(tmp_path / attempt)))
  first, second = (s["eval"] for s in summaries)
  assert first["loss"] == second["loss"] and first["accuracy"] == second["accuracy"]
  assert first["accuracy_by_distance"] == second["accuracy_by_distance"]
