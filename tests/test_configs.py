"""Every config file and argument builds and validates; bad configs fail early and clearly."""

from __future__ import annotations

import os

import pytest
from ml_collections import config_dict

from seqresearch import build
from seqresearch import models
from seqresearch import tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every task's config file (configs/study.py is the study's, tested with the report;
# configs/task.py takes any task by name, tested below).
CONFIG_FILES = sorted(f"configs/{f}" for f in os.listdir(os.path.join(ROOT, "configs"))
                      if f.endswith(".py") and f not in ("__init__.py", "study.py", "task.py"))
ARGS = [f"{m}{extra}" for m in models.MODEL_NAMES for extra in ("", ",tiny")]


@pytest.mark.parametrize("path", CONFIG_FILES)
@pytest.mark.parametrize("arg", ARGS)
def test_every_config_and_argument_validates(path, arg, load_config):
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


def test_argument_shortcuts_and_dotted_overrides(load_config):
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
def test_bad_config_arguments(arg, message, load_config):
  with pytest.raises(ValueError, match=message):
    load_config("configs/copy.py", arg)


def test_locked_config_rejects_unknown_field(load_config):
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
def test_bad_config_fails_before_compiling_with_a_clear_message(path, arg, field, value, words,
                                                                 load_config):
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


def test_workdir_is_not_created_for_a_bad_config(tmp_path, load_config):
  from seqresearch import train
  config = load_config("configs/copy.py", "lstm,tiny")
  config.task.min_delay = 0
  with pytest.raises(ValueError, match="task.min_delay"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("path,arg,fields", [
    # `tiny` used to overwrite the distance options given beside it (issue 14.1).
    ("configs/copy.py", "transformer,tiny,delay=600", {"min_delay": 600, "max_delay": 600}),
    ("configs/copy.py", "delay=600,lstm,tiny", {"min_delay": 600, "max_delay": 600}),
    ("configs/copy.py", "gru,tiny,max_delay=9", {"min_delay": 3, "max_delay": 9}),
    ("configs/agreement.py", "lstm,tiny,distance=12", {"min_distance": 12, "max_distance": 12}),
    ("configs/agreement.py", "tiny,rnn,mode=natural", {"mode": "natural"}),
])
def test_options_given_with_tiny_are_applied(path, arg, fields, load_config):
  config = load_config(path, arg)
  assert config.num_train_steps == 6  # tiny applied ...
  for field, value in fields.items():  # ... and every option given beside it too
    assert config.task[field] == value, field


def test_delay_zero_with_tiny_is_refused_not_dropped(load_config):
  with pytest.raises(ValueError, match=r"config argument delay=0: must be an integer >= 1"):
    load_config("configs/copy.py", "lstm,tiny,delay=0")
  config = load_config("configs/copy.py", "lstm,tiny,task.min_delay=0")  # the field itself
  with pytest.raises(ValueError, match=r"task.min_delay=0"):
    build.validate_run(config)


@pytest.mark.parametrize("path,option", [
    ("configs/copy.py", "delay"), ("configs/agreement.py", "distance"),
    ("configs/induction.py", "distance"), ("configs/adding.py", "distance"),
    ("configs/mqar.py", "distance"), ("configs/mqar.py", "pairs"),
    ("configs/selective_copy.py", "distance"), ("configs/selective_copy.py", "context"),
    ("configs/long_copy.py", "length")])
def test_an_integer_option_below_one_is_refused_in_the_users_words(path, option, load_config):
  """`distance=0` used to set fixed_distance = 0 (random distances) in induction, adding,
  MQAR and selective copy: a run the user did not ask for, trained without a word."""
  for value in (0, -3):
    with pytest.raises(ValueError, match=rf"config argument {option}={value}: must be an "
                                         r"integer >= 1 \(leave the option out"):
      load_config(path, f"lstm,{option}={value}")


@pytest.mark.parametrize("arg,words", [
    ("lstmm", ["'lstmm'", "not a model name", "'lstm'"]),
    ("lstm,gru", ["two models"]),
    ("lstm,delay=abc", ["delay='abc'", "int"]),
])
def test_config_argument_errors_name_what_is_wrong(arg, words, load_config):
  with pytest.raises(ValueError) as err:
    load_config("configs/copy.py", arg)
  for word in words:
    assert word in str(err.value)


def test_every_model_of_the_table_has_a_config_group_from_its_settings(load_config):
  for name in models.MODEL_NAMES:
    config = load_config("configs/copy.py", name)
    assert config.model.name == name
    settings = models.model_settings(name, **{k: v for k, v in config.model.items()
                                              if k != "name"})
    assert models.name_of(settings) == name
    assert models.entry(name).label and models.entry(name).color


@pytest.mark.parametrize("task", sorted(tasks.SETTINGS))
def test_generic_task_config_builds_every_task_of_the_table(task, load_config):
  """A task of the table trains from configs/task.py with no config file of its own."""
  for model in ("lstm", "transformer"):
    config = load_config("configs/task.py", f"{model},task={task},tiny")
    run = build.validate_run(config)
    assert config.task.name == task and type(run.task) is tasks.SETTINGS[task]
    assert run.task == tasks.SETTINGS[task]()  # the settings' own defaults


def test_generic_task_config_needs_a_known_task(load_config):
  with pytest.raises(ValueError, match="task=NAME is missing"):
    load_config("configs/task.py", "lstm")
  with pytest.raises(ValueError, match=r"task.name='nope': must be one of"):
    load_config("configs/task.py", "lstm,task=nope")


def test_sizes_that_cannot_fit_the_device_are_refused_before_compiling(load_config):
  # Issue 14.10: an out-of-memory size used to compile for minutes, then fail inside JAX.
  config = load_config("configs/copy.py", "transformer,model.d_model=32768,model.mlp_dim=131072")
  settings = build.validate_run(config)
  with pytest.raises(ValueError, match=r"needs at least .* GiB on each device .* more than the "
                                       r"device's 24.0 GiB"):
    build.check_memory(config, settings, num_devices=1, limit_bytes=24 * 2**30)
  small = load_config("configs/copy.py", "lstm")
  build.check_memory(small, build.validate_run(small), num_devices=1, limit_bytes=24 * 2**30)
  # The bound counts every seed's copy of the state.
  config = load_config("configs/copy.py", "lstm,model.hidden_size=4096")
  settings = build.validate_run(config)
  build.check_memory(config, settings, num_devices=1, limit_bytes=2 * 2**30)
  config.num_seeds = 8
  with pytest.raises(ValueError, match="8 seed"):
    build.check_memory(config, settings, num_devices=1, limit_bytes=2 * 2**30)
