"""What every entry point shares: a user's mistake as one line on stderr and exit status 2.

  app.run(main, flags_parser=cli.parse_flags)   # bad flags: one line, exit 2
  return cli.usage_error("--parallel=0: must be an integer >= 1.")
"""

from __future__ import annotations

import re
import sys

from absl import flags


def usage_error(message: str) -> int:
  """Prints `error: message` on stderr; returns 2, the exit status of a user's mistake."""
  print(f"error: {message}", file=sys.stderr)
  return 2


def flag_error_line(error: BaseException, argv: list[str]) -> str:
  """One line for a flag or config-file error (absl and config_flags wrap the reason in a
  traceback, usage text or a "did you mean" on a line of its own).

  Args:
    error: what parsing the flags raised.
    argv: the command line (to name the --config. flag an unknown field came from).
  """
  lines = [line.strip() for line in str(error).replace("\\n", "\n").splitlines()
           if line.strip()]
  if isinstance(error, (AttributeError, KeyError)):  # config_flags: no such --config. field
    words = re.findall(r"\w+", lines[0]) if lines else []
    name = words[0] if words else "?"
    given = next((a for a in argv if a.startswith("--config.") and name in a), "--config.")
    hint = next((line.replace("\\", "").rstrip("'") for line in lines
                 if line.startswith("Did you mean")), "")
    return f"{given}: no field {name!r} in the config. {hint}".strip()
  reasons = [m.group(1) for line in lines
             if (m := re.match(r"^\w+(?:Error|Exception): (.+)$", line))]
  if reasons:
    return reasons[-1]
  errno_line = next((line for line in lines if "[Errno" in line), None)
  if errno_line:  # config_flags: the config file cannot be read
    return f"--config: {errno_line}"
  return lines[0] if lines else repr(error)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a user's mistake as one line and exit status 2."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, OSError, ValueError, TypeError, AttributeError, KeyError) as e:
    sys.exit(usage_error(flag_error_line(e, argv)))
