"""The scaling measurements return consistent rows (timings themselves are never asserted)."""

from __future__ import annotations

import pytest

from seqresearch import scaling


def test_seeds_vmapped_vs_sequential_is_consistent(tiny_config):
  config = tiny_config()
  row = scaling.seeds_vmapped_vs_sequential(config, num_seeds=3, num_steps=2, repetitions=2)
  assert row["num_seeds"] == 3 and row["vmapped_sec"] > 0 and row["sequential_sec"] > 0
  assert row["speedup"] == pytest.approx(row["sequential_sec"] / row["vmapped_sec"])
  assert row["vmapped_seed_steps_per_sec"] == pytest.approx(3 * 2 / row["vmapped_sec"])


def test_steps_per_sec_by_devices_runs_each_count_in_its_own_process(tiny_config):
  config = tiny_config()
  rows = scaling.steps_per_sec_by_devices(config, (1, 2), num_steps=2, repetitions=2)
  assert [r["devices"] for r in rows] == [1, 2], rows
  assert rows[0]["relative_to_1_device"] == 1.0
  assert all(r["steps_per_sec"] > 0 for r in rows)
