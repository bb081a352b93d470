"""Every config file and argument builds and validates; bad configs fail early and clearly."""

from __future__ import annotations

import pytest
from ml_collections import config_dict

from conftest import CONFIG_FILES, MODEL_NAMES, load_config
from seqresearch import build
from seqresearch import configlib

ARGS = [f"{m}{extra}" for m in MODEL_NAMES for extra in ("", ",tiny")]


@pytest.mark.parametrize("path", CONFIG_FILES)
@pytest.mark.parametrize("arg", ARGS)
def test_every_config_and_argument_validates(path, arg):
  config = load_config(path, arg)
  run = build.validate_run(config)
  assert config.model.name == arg.split(",")[0]
  assert run.vocab_size == run.task.vocab_size and run.seq_len == run.task.seq_len
  # Every field is declared with a concrete type: none is None (None cannot be overridden).
  def walk(node, prefix=""):
    for key, value in node.items():
      if isinstance(value, config_dict.ConfigDict):
        walk(value, f"{prefix}{key}.")
      else:
        assert value is not None, f"{prefix}{key} is None"
  walk(config)


def test_argument_shortcuts_and_dotted_overrides():
  config = load_config("configs/copy.py", "transformer,delay=200,model.num_layers=3")
  assert config.model.name == "transformer"
  assert config.task.min_delay == config.task.max_delay == 200
  assert config.model.num_layers == 3
  config = load_config("configs/agreement.py", "gru,distance=12,mode=natural")
  assert (config.task.min_distance, config.task.max_distance) == (12, 12)
  assert config.task.mode == "natural"


@pytest.mark.parametrize("arg,message", [
    ("lstm,model.hidden_sise=3", "no field 'hidden_sise'"),
    ("lstm,model.hidden_size=abc", "must be a int"),
    ("lstm,nonsense.x=1", "no group 'nonsense'"),
])
def test_bad_config_arguments(arg, message):
  with pytest.raises(ValueError, match=message):
    load_config("configs/copy.py", arg)


def test_locked_config_rejects_unknown_field():
  config = load_config("configs/copy.py", "lstm")
  with pytest.raises(AttributeError):
    config.task.dealy = 3


BAD = [
    # (config file, arg, field path, value, words the message must contain)
    ("configs/copy.py", "lstm", "task.min_delay", 0, ["task.min_delay=0", ">= 1"]),
    ("configs/copy.py", "lstm", "task.name", "cpoy", ["task.name='cpoy'", "copy"]),
    ("configs/copy.py", "lstm", "model.name", "lstn", ["model.name='lstn'", "transformer"]),
    ("configs/copy.py", "lstm", "model.hidden_size", -4, ["model.hidden_size=-4", ">= 1"]),
    ("configs/copy.py", "lstm", "model.lstm_init", "xavier", ["model.lstm_init='xavier'"]),
    ("configs/copy.py", "lstm", "model.unroll", True, ["model.unroll=True", "integer"]),
    ("configs/copy.py", "transformer", "model.num_heads", 3, ["model.num_heads=3", "divide"]),
    ("configs/copy.py", "transformer", "model.max_len", 32, ["model.max_len=32", "sequence"]),
    ("configs/copy.py", "lstm", "batch_size", 0, ["batch_size=0", ">= 1"]),
    ("configs/copy.py", "lstm", "num_train_steps", -1, ["num_train_steps=-1", ">= 0"]),
    ("configs/copy.py", "lstm", "optimizer.name", "adagrad", ["optimizer.name='adagrad'", "adam"]),
    ("configs/copy.py", "lstm", "optimizer.learning_rate", -1.0, ["optimizer.learning_rate"]),
    ("configs/copy.py", "lstm", "optimizer.schedule", "linear", ["optimizer.schedule='linear'"]),
    ("configs/agreement.py", "lstm", "task.max_nouns", 9, ["task.max_nouns", "3"]),
    ("configs/agreement.py", "lstm", "task.min_attractors", 3, ["task.min_attractors=3"]),
    ("configs/agreement.py", "lstm", "task.mode", "mixed", ["task.mode='mixed'", "balanced"]),
    ("configs/copy.py", "lstm", "host_allocator", "jemalloc", ["host_allocator='jemalloc'",
                                                               "keep"]),
]


@pytest.mark.parametrize("path,arg,field,value,words", BAD, ids=[b[2] for b in BAD])
def test_bad_config_fails_before_compiling_with_a_clear_message(path, arg, field, value, words):
  config = load_config(path, arg)
  config.unlock()
  node = config
  *groups, leaf = field.split(".")
  for g in groups:
    node = node[g]
  node[leaf] = value
  with pytest.raises(ValueError) as err:
    build.validate_run(config)
  for word in words:
    assert word in str(err.value), (word, str(err.value))


def test_workdir_is_not_created_for_a_bad_config(tmp_path):
  from seqresearch import train
  config = load_config("configs/copy.py", "lstm,tiny")
  config.task.min_delay = 0
  with pytest.raises(ValueError, match="task.min_delay"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
