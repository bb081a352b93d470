"""The prepared accelerator check: python scripts/device_check.py [--out=DIR]

On a GPU (at most about 8 minutes): the `gpu` tests, the quick benchmark with the GPU rows,
the issue-17 targets, the main job and K=8 vmapped seeds against 8 sequential runs. It writes
<DIR>/<backend>-<device>.json (default DIR: benchmarks, e.g. benchmarks/gpu-nvidia-h200.json)
and prints a table. On the CPU it runs the same parts at tiny sizes (under 2 minutes) to check
the plumbing. The logic lives in `seqresearch.bench.device`.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)

from seqresearch.bench import device  # noqa: E402
from seqresearch.bench import runner  # noqa: E402

_OUT = flags.DEFINE_string("out", "benchmarks", "Folder of the JSON.")
_TESTS = flags.DEFINE_bool("tests", True, "Run the gpu-marked tests (tests/test_gpu.py).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(ROOT, "configs", "copy.py") + ":lstm",
    "The main job (its step is also the vmapped-seeds one).")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  test_file = os.path.join(ROOT, "tests", "test_gpu.py") if _TESTS.value else None
  results = device.run_device_check(_CONFIG.value, test_file, log=lambda m: print(f"... {m}"))
  path = device.output_path(_OUT.value)
  runner.write_json(results, path)
  print(device.format_check(results))
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
