"""The benchmark: our models against Flax, jax.nn and PyTorch, and the runner's scaling.

  settings  BenchSettings: what to measure, validated before anything compiles
  harness   the timing loop, compiled train/forward runners, the matmul roof, the environment
  baselines the implementations: ours (and typed variants) and the external ones
  runner    run_benchmark: every model x length x implementation, compile scaling, the runner
  scaling   K vmapped seeds vs K sequential runs; steps/s by device count (one process each)
  table     format_table: the printed table of the JSON results
  device    the prepared accelerator check (scripts/device_check.py)

The models timed come from `seqresearch.models.MODELS`; a model without an external
counterpart in `baselines.BASELINES` gets only its own rows.
"""

from seqresearch.bench.runner import default_output_path, run_benchmark, write_json
from seqresearch.bench.settings import QUICK, BenchSettings
from seqresearch.bench.table import format_table

__all__ = ["QUICK", "BenchSettings", "default_output_path", "format_table", "run_benchmark",
           "write_json"]
