"""Running a sweep's members: here (`run_local`, one process per run) or as a job array.

Each run is a child process `python -m seqresearch.train_cli ...` (isolation: a crash or an
out-of-memory of one run does not stop the sweep), in its own session so that a Ctrl-C reaches
the sweep alone. Finished runs are skipped; unfinished ones resume from their checkpoints;
failures are recorded in `<run>/error.txt` and the sweep goes on.

Devices: with `visible_devices`, a run gets a device (CUDA_VISIBLE_DEVICES) when it *starts*,
the least busy one at that moment, so a run never waits beside another while a device idles.

Ctrl-C (or SIGTERM to the sweep): the children get SIGTERM (the training loop saves a
checkpoint and exits 143), no new run starts, and KeyboardInterrupt is raised again for the
caller; rerunning the same sweep resumes them. A second Ctrl-C kills the children at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
  from seqresearch.sweep import Run

PREEMPTED = 143  # The training command's exit status after SIGTERM: checkpoint saved.
STOP_GRACE_S = 120.0  # How long a stopped child may take to save its checkpoint.


class Child(Protocol):
  """What `run_local` needs of a started run (subprocess.Popen has it)."""

  def poll(self) -> int | None: ...
  def send_signal(self, sig: int) -> None: ...
  def kill(self) -> None: ...
  def wait(self, timeout: float | None = None) -> int: ...


def start(run: Run, env: dict[str, str], new_session: bool = True) -> subprocess.Popen:
  """Starts the run's training process, output appended to `<run>/train.log`.

  With `new_session` the child does not receive the terminal's Ctrl-C: `run_local` stops it
  with SIGTERM (a checkpoint) instead of a KeyboardInterrupt traceback in its log.
  """
  os.makedirs(run.workdir, exist_ok=True)
  with open(os.path.join(run.workdir, "train.log"), "a") as log:
    return subprocess.Popen(run.command(), stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **env}, start_new_session=new_session)


def finish(run: Run, code: int) -> dict[str, Any]:
  """The result of a run whose process exited with `code`; writes/clears `<run>/error.txt`."""
  error_path = os.path.join(run.workdir, "error.txt")
  if code == 0:
    changes = run.config_changes() if run.config else []
    if not changes:
      if os.path.exists(error_path):
        os.remove(error_path)  # An earlier failure is fixed.
      return {"name": run.name, "status": "done"}
    reason = ("the run's config.json is not the config the sweep built: "
              + "; ".join(changes[:5]))
  elif code in (PREEMPTED, -signal.SIGTERM, -signal.SIGINT):
    return {"name": run.name, "status": "stopped (resumable: rerun the sweep)"}
  else:
    reason = f"exit status {code}"
  log_path = os.path.join(run.workdir, "train.log")
  tail = []
  if os.path.exists(log_path):
    with open(log_path) as f:
      tail = f.readlines()[-40:]
  os.makedirs(run.workdir, exist_ok=True)
  with open(error_path, "w") as f:
    f.write(f"{reason}\ncommand: {' '.join(run.command())}\n\n" + "".join(tail))
  return {"name": run.name, "status": f"failed ({reason.split(':')[0]}, see {error_path})"}


def execute(run: Run, env: dict[str, str] | None = None) -> dict[str, Any]:
  """Runs one member to completion (resuming if it has checkpoints); never raises for a run."""
  if run.error:
    return {"name": run.name, "status": f"invalid ({run.error})"}
  if run.finished:
    return {"name": run.name, "status": "skipped (finished)"}
  # Same process group: a scheduler's signal to this job reaches the training process too.
  return finish(run, start(run, env or {}, new_session=False).wait())


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _stop(running: dict[Any, tuple[Run, str | None, float]], say: Callable[[str], None],
          grace_s: float) -> list[dict[str, Any]]:
  """SIGTERM to every running child, wait for their checkpoints; a second Ctrl-C kills."""
  for child in running:
    child.send_signal(signal.SIGTERM)
  say(f"Stopping: {len(running)} running run(s) save a checkpoint and exit "
      "(Ctrl-C again to kill them).")
  results = []
  try:
    for child, (run, _, _) in running.items():
      try:
        results.append(finish(run, child.wait(timeout=grace_s)))
      except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        results.append({"name": run.name, "status": f"stopped (killed after {grace_s:.0f}s "
                                                    "without saving: resumes from its last "
                                                    "checkpoint)"})
  except KeyboardInterrupt:
    for child in running:
      if child.poll() is None:
        child.kill()
  return results


def run_local(runs: Sequence[Run], parallel: int = 1, visible_devices: Sequence[str] = (),
              launch: Callable[[Run, dict[str, str]], Child] = start,
              say: Callable[[str], None] = lambda line: print(line, flush=True),
              poll_s: float = 0.2, grace_s: float = STOP_GRACE_S) -> list[dict[str, Any]]:
  """Runs the sweep here, `parallel` processes at a time, printing `[k/N] name: status, ETA`.

  Args:
    runs: the members (invalid ones are reported, finished ones skipped).
    parallel: processes at a time (>= 1).
    visible_devices: accelerator ids; each run, when it starts, gets the one with the fewest
      runs on it (CUDA_VISIBLE_DEVICES). Empty: no assignment.
    launch: starts a run (tests pass a fake); returns its process.
    say: where progress lines go.
    poll_s: seconds between checks of the running processes.
    grace_s: seconds a stopped child may take to save its checkpoint before it is killed.

  Returns:
    One result per member: {'name', 'status'} (done, skipped (finished), failed (...),
    invalid (...)), in the order they ended.

  Raises:
    KeyboardInterrupt: after a Ctrl-C, once the running members are stopped (resumable).
  """
  if parallel < 1:
    raise ValueError(f"parallel={parallel}: must be >= 1.")
  pending, total = list(runs), len(runs)
  running: dict[Any, tuple[Run, str | None, float]] = {}
  on_device = {d: 0 for d in visible_devices}
  results: list[dict[str, Any]] = []
  durations: list[float] = []

  def ended(result: dict[str, Any], seconds: float | None) -> None:
    results.append(result)
    line = f"[{len(results)}/{total}] {result['name']}: {result['status']}"
    if seconds is not None:
      durations.append(seconds)
      line += f" in {_duration(seconds)}"
    to_train = sum(not (r.error or r.finished) for r in pending)
    if durations and (to_train or running):
      mean, now = sum(durations) / len(durations), time.monotonic()
      left = to_train * mean + sum(max(mean - (now - t0), 0.0) for _, _, t0 in running.values())
      line += f"; ETA {_duration(left / min(parallel, to_train + len(running)))}"
    say(line)

  try:
    while pending or running:
      while pending and len(running) < parallel:
        run = pending.pop(0)
        if run.error:
          ended({"name": run.name, "status": f"invalid ({run.error})"}, None)
        elif run.finished:
          ended({"name": run.name, "status": "skipped (finished)"}, None)
        else:
          device = (min(visible_devices, key=lambda d: on_device[d]) if visible_devices
                    else None)
          env = {} if device is None else {"CUDA_VISIBLE_DEVICES": device}
          if device is not None:
            on_device[device] += 1
          child = None
          try:
            child = launch(run, env)
          finally:  # A Ctrl-C right after the start still finds the child to stop.
            if child is not None:
              running[child] = (run, device, time.monotonic())
          say(f"  started {run.name}" + ("" if device is None else f" on device {device}"))
      done = [child for child in running if child.poll() is not None]
      for child in done:
        run, device, t0 = running.pop(child)
        if device is not None:
          on_device[device] -= 1
        ended(finish(run, child.poll()), time.monotonic() - t0)
      if not done:
        time.sleep(poll_s)
  except KeyboardInterrupt:
    for result in _stop(running, say, grace_s):
      ended(result, None)
    unfinished = len(pending) + sum(r["status"].startswith("stopped") for r in results)
    say(f"Stopped by Ctrl-C: {unfinished} run(s) not finished; rerun the same command to "
        "resume them.")
    raise
  return results


def run_submitit(runs: Sequence[Run], folder: str, cluster: str | None, partition: str,
                 timeout_min: int, gpus_per_job: int, array_parallelism: int
                 ) -> list[dict[str, Any]]:
  """Submits the sweep as one job array through submitit (SLURM, or `cluster='local'`)."""
  import submitit  # pylint: disable=g-import-not-at-top  (only sweeps on clusters need it)
  executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
  params: dict[str, Any] = {"timeout_min": timeout_min}
  if executor.cluster == "slurm":
    params.update(slurm_partition=partition or None, slurm_array_parallelism=array_parallelism,
                  gpus_per_node=gpus_per_job)
  executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
  done = [{"name": r.name, "status": "skipped (finished)"} for r in runs if r.finished]
  invalid = [{"name": r.name, "status": f"invalid ({r.error})"} for r in runs if r.error]
  todo = [run for run in runs if not (run.finished or run.error)]
  jobs = executor.map_array(execute, todo)
  print(f"Submitted {len(jobs)} jobs ({len(done)} already finished) to "
        f"{executor.cluster}; logs in {folder}.", flush=True)
  return [job.result() for job in jobs] + done + invalid

