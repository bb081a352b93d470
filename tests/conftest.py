"""Shared test helpers: loading config files the way `--config=path:arg` does."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = ("configs/copy.py", "configs/agreement.py")
MODEL_NAMES = ("rnn", "lstm", "gru", "transformer")


def load_config(path: str, arg: str | None = None):
  """Equivalent of `--config=path:arg` (ml_collections config_flags), locked."""
  spec = importlib.util.spec_from_file_location("_config_under_test", os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.lock()
  return config


@pytest.fixture
def tiny_config():
  """Makes configs for tests; by default the seconds-long copy/LSTM one."""

  def make(path: str = "configs/copy.py", arg: str = "lstm,tiny"):
    """Any config (`tiny` in `arg` for the seconds-long variant), progress bar off."""
    config = load_config(path, arg)
    config.progress_bar = False
    return config

  return make


def run_script(args: list[str]) -> list[str]:
  return [sys.executable, os.path.join(ROOT, "scripts", "train.py"), *args]
