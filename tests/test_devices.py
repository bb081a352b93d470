"""Many devices on one CPU: data parallelism equals one device, checkpoints cross device counts.

The 8-device side runs in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8
(the flag must be set before JAX starts), the 1-device side in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from seqresearch import build
from seqresearch import metric_writer
from seqresearch import train

EIGHT_DEVICES = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from configs import copy
    from seqresearch import build, steps, train
    assert jax.device_count() == 8, jax.devices()
    config = copy.get_config("lstm,tiny")
    config.progress_bar = False
    config.num_seeds = 2
    train.train_and_evaluate(config, sys.argv[1])
    # Restore the 1-device run's checkpoint onto 8 devices.
    _, _, state = train.load_run(sys.argv[2])
    leaf = jax.tree.leaves(state.params)[0]
    np.save(sys.argv[3], np.asarray(leaf))
    # The batch is really split: the compiled step sums gradients across devices.
    run = build.build_run(config)
    step = steps.make_train_step(run.graphdef, run.constants, run.tx, run.settings.task,
                                 config.batch_size, run.mesh)
    hlo = step.lower(run.state, run.keys["data"]).compile().as_text()
    print(json.dumps({"sharding": str(leaf.sharding), "devices": len(leaf.sharding.device_set),
                      "all_reduce": "all-reduce" in hlo}))
""")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_on_8_devices(*args: str) -> dict:
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", EIGHT_DEVICES, *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout + out.stderr
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # 8 forced host devices, training and resharding (51 CPU-s)
def test_eight_devices_equal_one_and_checkpoints_cross_device_counts(tmp_path, tiny_config):
  config = tiny_config()
  config.num_seeds = 2
  one = tmp_path / "one-device"
  train.train_and_evaluate(config, str(one))
  eight = tmp_path / "eight-devices"
  info = _run_on_8_devices(str(eight), str(one), str(tmp_path / "leaf.npy"))

  # 1 -> 8: the 1-device checkpoint restored on 8 devices, replicated over all of them.
  assert info["devices"] == 8
  assert info["all_reduce"]
  _, _, state_one = train.load_run(str(one))
  np.testing.assert_array_equal(np.load(tmp_path / "leaf.npy"),
                                np.asarray(jax.tree.leaves(state_one.params)[0]))

  # Data parallel over 8 devices equals 1 device to float tolerance, metric by metric.
  lines_one = metric_writer.read_metrics(str(one))
  lines_eight = metric_writer.read_metrics(str(eight))
  assert [(m["step"], m["split"], m["seed"]) for m in lines_one] == \
      [(m["step"], m["split"], m["seed"]) for m in lines_eight]
  for a, b in zip(lines_one, lines_eight):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-6)

  # 8 -> 1: the 8-device checkpoint restored here, on 1 device, equals the 1-device run.
  _, _, state_eight = train.load_run(str(eight))
  for x, y in zip(jax.tree.leaves(state_eight.params), jax.tree.leaves(state_one.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("field", ["batch_size", "eval_batch_size"])
def test_batch_not_divisible_by_devices_fails_early(tiny_config, field):
  config = tiny_config()
  config[field] = 12
  with pytest.raises(ValueError, match=rf"{field}=12: must be divisible by the number of "
                                       r"devices \(8\)"):
    build.validate_run(config, num_devices=8)
