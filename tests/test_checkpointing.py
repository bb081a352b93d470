"""Checkpoints: digests catch damage, fallback to the newest intact step, keep-best across
restarts, a full disk reported in one line. Small pytrees: no training, seconds."""

from __future__ import annotations

import errno
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from seqresearch import checkpointing
from seqresearch import workdir as workdir_lib


def _state(step: int) -> dict:
  """A state whose array data (random: incompressible) is the largest file of its step."""
  w = jax.random.normal(jax.random.key(step), (64, 64), jnp.float32)
  return {"params": {"w": w}, "step": jnp.asarray(step, jnp.int32)}


def _save_steps(directory, steps, keep=5, keep_best=0, accuracy=None):
  checkpoints = checkpointing.Checkpoints(str(directory), keep=keep, keep_best=keep_best)
  for step in steps:
    metrics = None if accuracy is None or step not in accuracy else {"accuracy": accuracy[step]}
    checkpoints.save(step, _state(step), metrics=metrics)
  checkpoints.close()


def _largest_file(step_dir) -> str:
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs]
  return max(files, key=os.path.getsize)


def _flip_byte(path: str) -> None:
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    data[len(data) // 2] ^= 0x01
    f.seek(0)
    f.write(data)


def test_digest_is_of_the_bytes():
  assert checkpointing.state_digest(_state(1)) == checkpointing.state_digest(_state(1))
  other = _state(1)
  w = np.asarray(other["params"]["w"]).copy()
  w[3, 5] = np.nextafter(w[3, 5], np.float32(np.inf))  # One bit of one number.
  other["params"]["w"] = jnp.asarray(w)
  assert checkpointing.state_digest(other) != checkpointing.state_digest(_state(1))


def test_intact_checkpoint_restores_exactly(tmp_path):
  _save_steps(tmp_path, [1, 2])
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=5, keep_best=0)
  step, state = checkpoints.restore_latest(_state(0))
  checkpoints.close()
  assert step == 2
  np.testing.assert_array_equal(state["params"]["w"], _state(2)["params"]["w"])


def test_flipped_byte_is_detected_and_the_newest_intact_step_is_used(tmp_path, capsys):
  _save_steps(tmp_path, [1, 2, 3])
  _flip_byte(_largest_file(tmp_path / "3"))
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=5, keep_best=0, writer=True)
  # orbax alone restores this step without an error, with one number changed.
  with pytest.raises(checkpointing.DamagedCheckpointError, match="differ from the digest"):
    checkpoints.restore(3, _state(0))
  step, state = checkpoints.restore_latest(_state(0))
  assert step == 2
  np.testing.assert_array_equal(state["params"]["w"], _state(2)["params"]["w"])
  err = capsys.readouterr().err
  assert "step 3" in err and "Falling back to step 2" in err
  # The damaged step is moved aside, not deleted, and step 3 can be saved again.
  assert checkpoints.all_steps() == [1, 2]
  assert os.listdir(str(tmp_path) + checkpointing.DAMAGED_SUFFIX)[0].startswith("3-")
  checkpoints.save(3, _state(3))
  checkpoints.close()


@pytest.mark.parametrize("damage", ["delete_data", "truncate_metadata"])
def test_unreadable_newest_step_falls_back_naming_both_steps(tmp_path, capsys, damage):
  _save_steps(tmp_path, [4, 8])
  if damage == "delete_data":
    os.remove(_largest_file(tmp_path / "8"))
  else:
    target = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "8" / "default")
              for f in fs if f == "_METADATA"][0]
    open(target, "w").write("{")
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=5, keep_best=0)
  step, state = checkpoints.restore_latest(_state(0))
  checkpoints.close()
  assert step == 4 and int(state["step"]) == 4
  err = capsys.readouterr().err
  assert "step 8 (" in err and "Falling back to step 4" in err


def test_no_intact_step_is_refused_with_each_reason(tmp_path):
  _save_steps(tmp_path, [1, 2])
  for step in ("1", "2"):
    _flip_byte(_largest_file(tmp_path / step))
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=5, keep_best=0)
  with pytest.raises(checkpointing.DamagedCheckpointError, match=r"step 2: .*step 1: "):
    checkpoints.restore_latest(_state(0))
  checkpoints.close()


def test_checkpoint_without_digest_restores_unverified_with_a_note(tmp_path, capsys):
  """Steps saved before digests existed (plain orbax) still restore."""
  manager = ocp.CheckpointManager(str(tmp_path), options=ocp.CheckpointManagerOptions(create=True))
  manager.save(5, args=ocp.args.StandardSave(_state(5)))
  manager.close()
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=5, keep_best=0)
  step, state = checkpoints.restore_latest(_state(0))
  checkpoints.close()
  assert step == 5 and int(state["step"]) == 5
  assert "restored unverified" in capsys.readouterr().err


def test_best_step_survives_a_restart(tmp_path):
  """Keep 1 newest + 1 best: after reopening the directory (a resumed run), the best step
  (evaluated earlier) must not be evicted by the next saves."""
  _save_steps(tmp_path, [10, 20, 30], keep=1, keep_best=1,
              accuracy={10: 0.2, 20: 0.9, 30: 0.5})
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=1, keep_best=1)
  assert checkpoints.metrics(20) == {"accuracy": 0.9}
  checkpoints.save(40, _state(40))
  checkpoints.save(50, _state(50), metrics={"accuracy": 0.4})
  checkpoints.close()
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=1, keep_best=1)
  assert checkpoints.all_steps() == [20, 50]
  assert checkpoints.best_step() == 20
  checkpoints.close()


def test_disk_full_during_save_is_one_line_with_path_and_size(tmp_path, monkeypatch):
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=2, keep_best=0)

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(ocp.CheckpointManager, "save", full)
  with pytest.raises(workdir_lib.DiskFullError) as err:
    checkpoints.save(1, _state(1))
  message = str(err.value)
  assert "\n" not in message
  assert str(tmp_path) in message and "needs about 16.0 KB" in message and "free there" in message
  monkeypatch.undo()
  checkpoints.close()


def test_disk_full_inside_orbax_background_error_is_recognised(tmp_path):
  """orbax wraps the OSError of its writer thread; the chain is searched for ENOSPC."""
  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as inner:
      raise RuntimeError("async save failed") from inner
  except RuntimeError as outer:
    wrapped = outer
  with pytest.raises(workdir_lib.DiskFullError, match=str(tmp_path)):
    with workdir_lib.disk_full_reported(str(tmp_path), 2**20):
      raise wrapped
  with pytest.raises(RuntimeError):  # Anything else passes through untouched.
    with workdir_lib.disk_full_reported(str(tmp_path)):
      raise RuntimeError("not a disk problem")


@pytest.mark.parametrize("part", ["_CHECKPOINT_METADATA", "metrics/metrics"])
def test_damaged_metadata_is_refused_by_a_reader_and_set_aside_by_the_writer(
    tmp_path, capsys, part):
  """orbax cannot open a directory with a damaged metrics file, and reads a damaged step
  metadata file as 'no digest' (so unverified): both are caught before orbax sees them."""
  _save_steps(tmp_path, [1, 2], keep_best=1, accuracy={1: 0.5, 2: 0.7})
  open(tmp_path / "2" / part, "w").write("{")
  with pytest.raises(checkpointing.DamagedCheckpointError, match=f"step 2: {part} is not JSON"):
    checkpointing.Checkpoints(str(tmp_path), keep=5, keep_best=1)
  checkpoints = checkpointing.Checkpoints(str(tmp_path), keep=5, keep_best=1, writer=True)
  step, _ = checkpoints.restore_latest(_state(0))
  checkpoints.close()
  assert step == 1
  assert f"step 2 in {tmp_path} is damaged ({part} is not JSON" in capsys.readouterr().err
