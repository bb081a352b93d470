"""Shared fixtures: config files loaded the way `--config=path:arg` does, the train command.

Tests import nothing from here: they ask for the fixtures by name.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys

import jax
import pytest

# Strict rank promotion for the whole suite: an implicit broadcast of a lower-rank operand
# (x_BxTxD + b_D) raises, so every broadcast in the library is written out (b_D[None, None]).
# Strict *dtype* promotion ("jax_numpy_dtype_promotion": "strict") is not possible: optax's
# Adam itself mixes its int32 step count with float32 moments (bias correction), so every
# training step would raise inside optax.
jax.config.update("jax_numpy_rank_promotion", "raise")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_config(path: str, arg: str | None = None):
  """Equivalent of `--config=path:arg` (ml_collections config_flags), locked."""
  spec = importlib.util.spec_from_file_location("_config_under_test", os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.lock()
  return config


@pytest.fixture
def load_config():
  """`load_config(path, arg)`: the locked config that `--config=path:arg` gives."""
  return _load_config


@pytest.fixture
def tiny_config():
  """Makes configs for tests; by default the seconds-long copy/LSTM one."""

  def make(path: str = "configs/copy.py", arg: str = "lstm,tiny"):
    """Any config (`tiny` in `arg` for the seconds-long variant), progress bar off."""
    config = _load_config(path, arg)
    config.progress_bar = False
    return config

  return make


@pytest.fixture
def train_command():
  """`train_command(args)`: the argv that runs scripts/train.py with `args` in a subprocess."""
  return lambda args: [sys.executable, os.path.join(ROOT, "scripts", "train.py"), *args]


def _check_cited_numbers(verdict, results, other_numbers=None) -> None:
  """Every number a verdict cites is the results' number at its path, printed as cited.

  With `other_numbers` (a set of decimal strings, e.g. a threshold {"0.9"}), every decimal
  number printed in the text must also be a cited one or one of these.
  """
  from seqresearch.study import stats, verdicts  # pylint: disable=g-import-not-at-top
  assert verdict.cited
  for c in verdict.cited:
    assert verdicts.lookup(results, c["path"]) == c["value"]
    assert stats.fmt(c["value"], c["spec"]) == c["text"] and c["text"] in verdict.text
  if other_numbers is not None:
    printed = re.findall(r"(?<![\w.^])-?\d+\.\d+(?![\w×])", verdict.text)
    assert set(printed) <= {c["text"] for c in verdict.cited} | set(other_numbers)


@pytest.fixture
def cited_numbers_equal_results():
  """`cited_numbers_equal_results(verdict, results[, other_numbers])`: asserts that each number
  a study verdict cites equals the results at its path and is printed as cited."""
  return _check_cited_numbers
