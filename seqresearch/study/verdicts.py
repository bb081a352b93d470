"""Verdicts whose every number is read from the results, with the path it came from.

A verdict (DESIGN.md §7) names the claim, the test, its threshold and the numbers. Its prose
never holds a hand-typed number: `Verdict.number(path)` formats the value found at `path` in
the experiment's results and records (path, value, text), so a test can check that every number
of the prose equals the results.json it came from.
"""

from __future__ import annotations

from typing import Any

from seqresearch.study import stats


def lookup(results: Any, path: str) -> Any:
  """results['a']['b'][2] for path 'a.b.2' (dict keys or list indices).

  Raises:
    KeyError: a part of the path is not in the results, naming it.
  """
  node = results
  for part in path.split("."):
    if isinstance(node, list):
      node = node[int(part)]
    elif isinstance(node, dict) and part in node:
      node = node[part]
    else:
      raise KeyError(f"{path!r}: no {part!r} in the results.")
  return node


def run_of(results: Any, path: str) -> str | None:
  """The run directory recorded nearest above `path` in the results (a 'run' key), if any."""
  parts = path.split(".")
  for end in range(len(parts), 0, -1):
    try:
      node = lookup(results, ".".join(parts[:end]))
    except (KeyError, IndexError, ValueError):
      continue
    if isinstance(node, dict) and isinstance(node.get("run"), str):
      return node["run"]
  return None


class Verdict:
  """A paragraph whose every number is read from the results, with its path recorded."""

  def __init__(self, results: dict[str, Any]):
    self.results = results
    self.sentences: list[str] = []
    self.cited: list[dict[str, Any]] = []
    self.contradictions: list[str] = []

  def number(self, path: str, spec: str = ".2f") -> str:
    """The value at `path`, formatted with `spec` ('n/a' for null); recorded for tracing."""
    value = lookup(self.results, path)
    text = stats.fmt(value, spec)
    self.cited.append({"path": path, "value": value, "spec": spec, "text": text})
    return text

  def pm(self, path: str, spec: str = ".2f") -> str:
    """'mean ± ci95' of the seed summary at `path` ('mean (1 finite seed)' without interval).

    Seeds that are not finite are named with their count.
    """
    summary = lookup(self.results, path)
    mean = self.number(path + ".mean", spec)
    if summary["ci95"] is None:
      text = f"{mean} ({self.number(path + '.num_finite', 'd')} finite seed" + \
          ("s)" if summary["num_finite"] != 1 else ")")
    else:
      text = f"{mean} ± {self.number(path + '.ci95', spec)}"
    if summary["num_nonfinite"]:
      text += (f" ({self.number(path + '.num_nonfinite', 'd')} of "
               f"{self.number(path + '.num_seeds', 'd')} seeds not finite)")
    return text

  def say(self, sentence: str) -> None:
    self.sentences.append(sentence)

  def contradicts(self, sentence: str) -> None:
    """A finding against the essay: said in the paragraph and listed in the report summary."""
    self.sentences.append(sentence)
    self.contradictions.append(sentence)

  @property
  def text(self) -> str:
    return " ".join(self.sentences)

  def to_json(self) -> dict[str, Any]:
    return {"text": self.text, "cited": self.cited, "contradictions": self.contradictions}
