"""The scaling measurements: what they run and how they combine times (never the timings)."""

from __future__ import annotations

import sys

import jax
import pytest

from seqresearch.bench import scaling


@pytest.mark.slow  # trains K seeds in one program (12 CPU-s)
def test_the_bare_step_trains_k_seeds_at_once(tiny_config):
  step, state, data_keys = scaling.bare_train_step(tiny_config(), num_seeds=3)
  assert data_keys.shape == (3,)
  assert jax.tree.leaves(state.params)[0].shape[0] == 3
  state = step(state, data_keys)
  assert state.step.tolist() == [1, 1, 1]
  # Seeds differ: their first-step losses are not all equal.
  assert len(set(state.sums.loss.tolist())) == 3


def test_seeds_vmapped_vs_sequential_combines_the_two_timings(tiny_config, monkeypatch):
  seconds = {3: 2.0, 1: 1.0}  # K-seed program 2 s; a one-seed program 1 s
  monkeypatch.setattr(scaling, "time_steps", lambda config, k, steps, reps: seconds[k])
  row = scaling.seeds_vmapped_vs_sequential(tiny_config(), num_seeds=3, num_steps=4)
  assert row["sequential_sec"] == 3.0 and row["vmapped_sec"] == 2.0
  assert row["speedup"] == 1.5
  assert row["vmapped_seed_steps_per_sec"] == 6.0 and row["sequential_seed_steps_per_sec"] == 4.0


@pytest.mark.slow  # one training child per device count
def test_each_device_count_runs_in_its_own_process(tiny_config):
  rows = scaling.steps_per_sec_by_devices(tiny_config(), (1, 2), num_steps=2, repetitions=2)
  assert [(r["devices"], r["status"]) for r in rows] == [(1, "ok"), (2, "ok")], rows
  assert rows[1]["relative_to_1_device"] == pytest.approx(
      rows[1]["steps_per_sec"] / rows[0]["steps_per_sec"])


def test_a_failed_child_is_an_error_row_and_the_others_are_kept(tiny_config, monkeypatch):
  children = iter([
      # 1 device: dies as an out-of-memory child would; 2 devices: reports 2 steps in 0.5 s.
      "import sys; sys.exit('RESOURCE_EXHAUSTED: out of memory')",
      "print('compiling...'); print('{\"devices\": 2, \"seconds\": 0.5}')",
      "print('no json')"])
  monkeypatch.setattr(scaling, "child_command",
                      lambda config, steps, reps: [sys.executable, "-c", next(children)])
  rows = scaling.steps_per_sec_by_devices(tiny_config(), (1, 2, 4), num_steps=2, repetitions=2)
  assert rows[0] == {"devices": 1, "status": "error",
                     "reason": "exit status 1: RESOURCE_EXHAUSTED: out of memory"}
  assert rows[1] == {"devices": 2, "status": "ok", "reason": None, "steps_per_sec": 4.0}
  assert rows[2]["devices"] == 4 and rows[2]["status"] == "error"
  assert rows[2]["reason"].startswith("unreadable output"), rows[2]
