"""Slow: small models learn small versions of the recall/capacity tasks (`pytest -m slow`).

Each run takes one to three minutes on a 2-core CPU. If one fails after a change, the change
broke the task, its scoring or learning, not only a number. Measured (2026-11-29, a shared
2-core CPU) with these exact settings: MQAR Transformer accuracy 1.000 (chance 0.25);
selective copy LSTM 1.000 (chance 0.125); induction Transformer 1.000 (chance 0.125); long
copy Transformer 1.000 (chance 0.125); adding LSTM MSE 0.00013 against the 0.164 baseline
(accuracy 0.998).
"""

from __future__ import annotations

import pytest

from seqresearch import train

pytestmark = pytest.mark.slow

TRANSFORMER = "model.d_model=64,model.mlp_dim=128,model.num_layers=2"
LSTM = "model.hidden_size=128,model.embed_dim=32"


def _train(tmp_path, tiny_config, name: str, arg: str, steps: int) -> dict:
  config = tiny_config(f"configs/{name}.py", arg)
  config.batch_size, config.eval_batch_size, config.num_eval_batches = 64, 256, 2
  config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = steps
  config.log_every_steps = 500
  return train.train_and_evaluate(config, str(tmp_path))["eval"]


def test_transformer_learns_mqar(tmp_path, tiny_config):
  ev = _train(tmp_path, tiny_config, "mqar",
              f"transformer,tiny,pairs=4,length=16,num_keys=16,num_values=16,{TRANSFORMER}", 1500)
  assert ev["accuracy"] >= 0.95 and ev["chance_accuracy"] == 0.25, ev


def test_lstm_learns_selective_copy(tmp_path, tiny_config):
  ev = _train(tmp_path, tiny_config, "selective_copy",
              f"lstm,tiny,copy_length=4,context_len=16,{LSTM}", 1500)
  assert ev["accuracy"] >= 0.95, ev
  assert set(ev["accuracy_by_distance"]) == {str(d) for d in range(4, 17)}


def test_transformer_learns_induction(tmp_path, tiny_config):
  ev = _train(tmp_path, tiny_config, "induction",
              f"transformer,tiny,num_symbols=8,length=16,{TRANSFORMER}", 2000)
  assert ev["accuracy"] >= 0.95, ev


def test_transformer_learns_long_copy(tmp_path, tiny_config):
  ev = _train(tmp_path, tiny_config, "long_copy",
              f"transformer,tiny,num_symbols=8,min_length=2,max_length=8,{TRANSFORMER}", 1500)
  assert ev["accuracy"] >= 0.95 and ev["sequence_accuracy"] >= 0.9, ev


def test_lstm_learns_the_adding_problem_from_output_channel_zero(tmp_path, tiny_config):
  ev = _train(tmp_path, tiny_config, "adding",
              f"lstm,tiny,length=10,num_levels=8,{LSTM},optimizer.learning_rate=0.003", 1500)
  assert ev["loss"] < 0.1 * ev["memoryless_baseline_loss"], ev
  assert ev["accuracy"] >= 0.9, ev
