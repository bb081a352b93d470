"""Benchmarks the models against Flax, jax.nn and PyTorch: python scripts/bench.py [--quick]

Prints a table and writes the JSON (see README "Benchmark"). --quick: n=64 only, no variants,
a short runner run (a few minutes on a 2-core CPU). The logic lives in `seqresearch.bench`.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seqresearch import bench  # pylint: disable=g-import-not-at-top,wrong-import-position
from seqresearch import host_memory  # pylint: disable=g-import-not-at-top,wrong-import-position
from seqresearch import models  # pylint: disable=g-import-not-at-top,wrong-import-position

_QUICK = flags.DEFINE_bool("quick", False, "Sizes and repetitions for a few-minute run.")
_OUT = flags.DEFINE_string("out", None, "JSON path; default benchmarks/<backend>[-quick].json.")
_MODELS = flags.DEFINE_list("models", list(models.MODEL_NAMES), "Models to time.")
_LENGTHS = flags.DEFINE_list("lengths", None, "Sequence lengths n (default 64,256,1024).")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Batch size B.")
_WIDTH = flags.DEFINE_integer("width", 256, "Hidden size / d_model.")
_REPS = flags.DEFINE_integer("repetitions", 5, "Timed repetitions (>= 5); medians reported.")
_TORCH = flags.DEFINE_bool("torch", True, "Include PyTorch (if installed).")
_RUNNER_STEPS = flags.DEFINE_integer("runner_steps", None, "Steps of the runner run; 0 skips.")
_BF16 = flags.DEFINE_bool("bfloat16", False,
                          "Also time ours in bfloat16 (models whose settings have compute_dtype).")
_SCANS = flags.DEFINE_bool("scan_forms", False,
                           "Also time sequential against associative scan (models with 'scan').")
_SEEDS = flags.DEFINE_integer("seeds", 0, "Also time K vmapped seeds vs K sequential runs.")
_DEVICES = flags.DEFINE_list("device_counts", [], "Also time steps/s on these device counts.")
_ALLOCATOR = flags.DEFINE_enum(
    "host_allocator", "auto", list(host_memory.HOST_ALLOCATORS),
    "Host memory for the whole process: 'keep' freed memory (CPU default), 'system' malloc.")
_RUNNER = config_flags.DEFINE_config_file(
    "runner_config", "configs/copy.py:lstm", "Config of the runner-overhead run.")


def _ints(flag: flags.FlagHolder) -> tuple[int, ...]:
  try:
    return tuple(int(n) for n in flag.value)
  except ValueError:
    raise ValueError(f"--{flag.name}={','.join(flag.value)}: must be integers, e.g. "
                     f"--{flag.name}=1,2") from None


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # the runner run's orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  fields = dict(bench.QUICK) if _QUICK.value else {}
  fields.update(models=tuple(_MODELS.value), batch_size=_BATCH.value, width=_WIDTH.value,
                repetitions=_REPS.value, torch=_TORCH.value, host_allocator=_ALLOCATOR.value,
                bfloat16=_BF16.value, scan_forms=_SCANS.value, seeds=_SEEDS.value)
  try:
    fields["device_counts"] = _ints(_DEVICES)
    if _LENGTHS.value:
      fields["lengths"] = _ints(_LENGTHS)
    if _RUNNER_STEPS.value is not None:
      fields["runner_steps"] = _RUNNER_STEPS.value
    settings = bench.BenchSettings(**fields)
  except ValueError as e:  # a user's mistake: one line, exit status 2, nothing compiled
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  results = bench.run_benchmark(settings, _RUNNER.value, log=lambda m: print(f"... {m}"))
  out = _OUT.value or bench.default_output_path(quick=_QUICK.value)
  bench.write_json(results, out)
  print(bench.format_table(results))
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
