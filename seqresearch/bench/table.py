"""The human-readable table of a benchmark's JSON results (`runner.run_benchmark`)."""

from __future__ import annotations

from typing import Any

from seqresearch import models


# Wide enough for the longest model name of the table (e.g. local_attention).
_MODEL_WIDTH = max(11, *(len(name) for name in models.MODEL_NAMES))


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
  return "-" if value is None else format(value * scale, spec)


def _header(results: dict[str, Any]) -> list[str]:
  roof, env = results["roof"], results["environment"]
  load_start = env["load_average_1min_start"]
  load_end = env.get("load_average_1min_end", 0.0)
  shared = max(load_start, load_end) > env["cpu_count"]
  # Each row's 'roof' column is against the roof of its own dtype (`harness.fraction_of_roof`).
  roofs = results.get("roofs") or {roof["dtype"]: roof}
  roof_text = ", ".join(f"{r['n']}^2 {d} matmul {r['flops_per_sec'] / 1e9:.1f} GFLOP/s"
                        for d, r in roofs.items())
  return [
      f"{env['backend']} ({env['device_kind']}, {env['cpu_count']} CPUs), jax "
      f"{env['versions']['jax']}, flax {env['versions']['flax']}, torch "
      f"{env['versions']['torch']}; roof: {roof_text}; host allocator "
      f"{env.get('host_allocator', 'system')}",
      "train = Adam step fwd+bwd; ours/x = our tokens/s over this one's; "
      f"medians of {results['settings']['repetitions']}; load average "
      f"{load_start:.1f} -> {load_end:.1f}"
      + (" (above the CPU count: a shared machine; trust ratios, not absolutes; PyTorch's"
         " spinning threads suffer most)" if shared else ""),
      f"{'model':<{_MODEL_WIDTH}} {'n':>5} {'impl':<36} {'train ms':>9} {'ktok/s':>8} "
      f"{'fwd ms':>8} "
      f"{'compile s':>9} {'mem MB':>8} {'GFLOP/s':>8} {'roof':>5} {'ours/x':>6}"]


def _result_line(r: dict[str, Any]) -> str:
  if r["status"] != "ok":
    return (f"{r['model']:<{_MODEL_WIDTH}} {r['length']:>5} {r['impl']:<36} {r['status']}: "
            f"{r['reason']}")
  return (f"{r['model']:<{_MODEL_WIDTH}} {r['length']:>5} {r['impl']:<36} {r['train_step_s'] * 1e3:>9.1f} "
          f"{r['tokens_per_sec'] / 1e3:>8.1f} {r['forward_s'] * 1e3:>8.2f} "
          f"{_fmt(r.get('compile_s'), '9.2f')} "
          f"{_fmt(r.get('peak_memory_bytes'), '8.1f', 1e-6)} "
          f"{_fmt(r.get('matmul_flops_per_sec'), '8.1f', 1e-9)} "
          f"{_fmt(r.get('fraction_of_roof'), '5.2f')} {_fmt(r.get('ours_speedup'), '6.2f')}")


def _failed(what: str, r: dict[str, Any]) -> str | None:
  """'<what>: error: <reason>' for a measurement whose status is 'error', else None."""
  return f"{what}: error: {r['reason']}" if r.get("status") == "error" else None


def _compile_line(c: dict[str, Any]) -> str:
  what = f"compile time of ours/{c['model']} train step"
  if error := _failed(what, c):
    return error
  times = ", ".join(f"n={n}: {t:.2f}s" for n, t in c["compile_s"].items())
  return f"{what}: {times} (ratio {c['ratio_longest_to_shortest']:.2f})"


def _runner_line(r: dict[str, Any]) -> str:
  if error := _failed("runner", r):
    return error
  return (f"runner ({r['task']}/{r['model']}, {r['num_train_steps']} steps): bare step "
          f"{r['bare_steps_per_sec']:.1f} steps/s; train_and_evaluate "
          f"{_fmt(r['runner_steps_per_sec_interval'], '.1f')} steps/s between logs "
          f"({_fmt(r['interval_ratio'], '.3f')}x), "
          f"{_fmt(r['runner_steps_per_sec_overall'], '.1f')} overall with eval and "
          f"checkpoints ({_fmt(r['overall_ratio'], '.3f')}x)")


def seeds_line(r: dict[str, Any]) -> str:
  """The line of `runner`'s vmapped-against-sequential seeds measurement."""
  if error := _failed("vmapped seeds", r):
    return error
  return (f"{r['num_seeds']} seeds of {r['model']} vmapped in one program: "
          f"{r['vmapped_sec']:.3f}s for {r['num_steps']} steps, {r['num_seeds']} sequential "
          f"runs {r['sequential_sec']:.3f}s (speed-up {r['speedup']:.2f}x)")


def _devices_lines(rows: Any) -> list[str]:
  if isinstance(rows, dict):  # the whole measurement failed
    return [f"steps/s by devices: error: {rows['reason']}"]
  out = []
  for r in rows:
    if r["status"] != "ok":
      out.append(f"steps/s on {r['devices']} device(s): {r['status']}: {r['reason']}")
    else:
      rel = r.get("relative_to_1_device")
      out.append(f"steps/s on {r['devices']} device(s): {r['steps_per_sec']:.1f}"
                 + ("" if rel is None else f" ({rel:.2f}x of 1 device)"))
  return out


def format_table(results: dict[str, Any]) -> str:
  """The table of `runner.run_benchmark`'s results: one line per row, then the extras."""
  lines = _header(results) + [_result_line(r) for r in results["results"]]
  lines += [_compile_line(c) for c in results.get("compile_scaling", [])]
  if "runner" in results:
    lines.append(_runner_line(results["runner"]))
  if "seeds_vmapped_vs_sequential" in results:
    lines.append(seeds_line(results["seeds_vmapped_vs_sequential"]))
  if "steps_per_sec_by_devices" in results:
    lines += _devices_lines(results["steps_per_sec_by_devices"])
  return "\n".join(lines)
