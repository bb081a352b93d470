"""Slow: small models actually learn the copy task (run with `pytest -m slow`; CI runs them).

An LSTM solves a short delay; a Transformer solves a longer one. If these fail after a change,
the change broke learning (or the defaults), not only a number.
"""

from __future__ import annotations

import pytest

from seqresearch import train

pytestmark = pytest.mark.slow


def test_lstm_learns_the_copy_task_at_a_short_delay(tmp_path, tiny_config):
  config = tiny_config("configs/copy.py", "lstm,delay=5")  # Distance 15; standard sizes.
  config.num_train_steps = 2500
  config.eval_every_steps = config.checkpoint_every_steps = 2500
  config.log_every_steps = 500
  summary = train.train_and_evaluate(config, str(tmp_path))
  ev = summary["eval"]
  assert ev["accuracy"] >= 0.95, ev
  assert ev["loss"] < 0.5 * ev["memoryless_baseline_loss"], ev


def test_transformer_learns_the_copy_task_at_a_longer_delay(tmp_path, tiny_config):
  config = tiny_config("configs/copy.py", "transformer,delay=30")  # Distance 40.
  config.model.d_model, config.model.mlp_dim, config.model.max_len = 64, 256, 64
  config.num_train_steps = 400
  config.eval_every_steps = config.checkpoint_every_steps = 400
  config.log_every_steps = 100
  summary = train.train_and_evaluate(config, str(tmp_path))
  ev = summary["eval"]
  assert ev["accuracy"] >= 0.95, ev
  assert ev["accuracy_by_distance"] == {"40": ev["accuracy"]}
