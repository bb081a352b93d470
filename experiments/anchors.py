"""Anchors for correctness: published directions reproduced at CPU size, with their sources.

Runs (configs/study.py): the `anchors_selective_copy` sweep — selective copying
(seqresearch/tasks/selective_copy.py; Gu & Dao 2023, "Mamba", §4.1.1 and App. E.1), one run per
model that the scale's `anchors` block names: the selective (input-dependent) recurrences, the
linear time-invariant (LTI) ones, and references, all at one step budget and the block's sizes.
Analysis, part 1: each model's final accuracy on the M outputs per seed (summary.json
`eval_by_seed`), mean and 95% interval over seeds combined with the binomial one, against
chance 1/A and the threshold SOLVED; the direction of Mamba's Table 1 by `direction`.
Part 2, no training (experiments/anchor_spectra.py): the spectra at initialisation of the
models the sweep trains, measured from a freshly built model (`spectrum_checks`): LRU's
eigenvalues on the ring [r_min, r_max] with phases in [0, max_phase] and area-uniform radii
(Orvieto et al. 2023, Lemma 2), gamma = sqrt(1 - |lambda|^2); S6's A = -(n + 1) (S4D-real)
and its step sizes in [dt_min, dt_max] (Gu & Dao 2023).
Part 3: the published anchors this CPU cannot reach, one line each (NOT_REPRODUCED).
Figure: accuracy per model with its interval, grouped by role, chance and SOLVED drawn.
"""

from __future__ import annotations

import os
from typing import Any

from ml_collections import config_dict

from experiments.anchor_spectra import spectrum_checks
from seqresearch import build, models
from seqresearch import workdir as workdir_lib
from seqresearch.study import markdown, plots, runner, stats, variants, verdicts

TITLE = "Anchors: published results reproduced at CPU size"
CLAIM = ("Not a claim of the essay but a check of the house: where a paper's result can be "
         "run at this size, does our implementation show its direction? Gu & Dao (2023, "
         "Table 1): on selective copying, selective (input-dependent) layers solve the task "
         "and linear time-invariant ones do not. Orvieto et al. (2023) and Gu & Dao (2023): "
         "the initial spectra of the LRU and of S6.")
SWEEP = "anchors_selective_copy"
SWEEPS = (SWEEP,)
SOLVED = 0.9  # accuracy on the M outputs from which a model counts as solving the task
ROLE_WORDS = {"selective": "selective (input-dependent)", "lti": "linear time-invariant",
              "reference": "reference"}
ROLE_SHORT = {"selective": "selective", "lti": "LTI", "reference": "reference"}

# Gu & Dao 2023, Table 1 (accuracy %, Model / Arch / Layer) and App. E.1 (its setting);
# Feng et al. 2024 (Table 2, Mamba's setting, 2 layers), seen in summaries only: not checked
# against the paper. Keys hold no '.' (results paths split there).
PUBLISHED = {
    "source": "Gu & Dao 2023 (Mamba), Table 1 and App. E.1",
    "setting": {"sequence_length": 4096, "vocab_size": 16, "symbols_to_copy": 16,
                "num_layers": 2, "d_model": 64, "steps": 400000, "batch_size": 64,
                "learning_rate": 1e-4},
    "accuracy_percent": {"S4, no gate": 18.3, "S6, no gate": 97.0, "H3 (S4)": 57.0,
                         "Hyena (H3 block)": 30.1, "H3 block, S6": 99.7,
                         "Mamba block, S4": 56.4, "Mamba block, Hyena": 28.4,
                         "Mamba (S6)": 99.8},
    "feng_2024_two_layers_percent": {"minGRU": 96.8, "minLSTM": 85.7},
    "feng_2024_evidence": "summary only; not verified against the paper",
}

# Published anchors out of reach here (ANCHORS.md numbering): what, and why not on this CPU.
NOT_REPRODUCED = (
    ("A5, A7", "LRU and S5 on the Long Range Arena (LRU 89.0 / 60.2 / 89.4 / 89.9 / 95.1 / "
     "94.2; S5 average 87.46)",
     "6-layer models of width 128-512 trained for tens of epochs on sequences of 1k-16k tokens "
     "(Path-X 16384): days of accelerator time, and the datasets are not on this machine."),
    ("A3", "Mamba's induction heads trained at 256 and tested up to 2^20 = 1,048,576 tokens "
     "(Table 11)",
     "200k-400k training steps and evaluation sequences of a million tokens; attention "
     "itself ran out of memory past 2^14 there."),
    ("A1", "Zoology's MQAR, Figure 2 (vocabulary 8192, d up to 512, L up to 512, best of 4 "
     "learning rates)",
     "100k training examples x 64 epochs per point over a grid of widths, lengths and rates: "
     "hours per point on this CPU. The capacity experiment runs MQAR at a reduced vocabulary "
     "instead."),
)


# ---------------------------------------------------------------- part 1: selective copying


def _status(summary: dict[str, Any], chance: float) -> str:
  """'solved' (interval at or above SOLVED), 'above chance', 'not above chance' or 'undecided'
  (fewer than two finite seeds: no spread over seeds is known)."""
  if summary["mean"] is None or summary["ci95"] is None or summary["num_finite"] < 2:
    return "undecided"
  low = summary["mean"] - summary["ci95"]
  if low >= SOLVED:
    return "solved"
  return "above chance" if low > chance else "not above chance"


def direction(found: dict[str, dict[str, Any]], roles: dict[str, tuple[str, ...]]
              ) -> dict[str, Any]:
  """Is the direction of Mamba's Table 1 reproduced: every selective model above every LTI one?

  The test, per (selective, LTI) pair: two 95% intervals that do not overlap
  (`stats.compare`). A pair is *against* the direction when the LTI model solves the task
  (status 'solved': its interval at or above SOLVED; an LTI layer then does what Table 1 says
  it cannot, however far above it the selective one lies) or when the selective model's
  interval lies below the LTI model's; *for* it when the selective model's interval lies
  above; *open* otherwise.

  Outcome: 'reproduced' when every pair is for it and every selective model's interval is
  above chance (a selective model that learnt nothing reproduces nothing, even above an LTI
  model emitting noise); 'not reproduced' when some pair is against it; 'undecided' otherwise
  (overlapping intervals, fewer than two finite seeds, missing runs).

  Args:
    found: {model: {'accuracy': seed summary, 'status': `_status`}} of the finished runs.
    roles: {'selective': names, 'lti': names, ...}.

  Returns:
    {'outcome', 'pairs': [{'selective', 'lti', 'comparison', 'side'}], 'missing': models
    of either side without a finished run, 'unlearnt': selective models not above chance,
    'few_seeds': models of either side with fewer than two finite seeds (status
    'undecided'), 'lti_solved': LTI models that solve the task, 'by_selective': {selective
    model: the outcome of the same test for it alone against every LTI model}}.
  """
  missing = [n for n in (*roles["selective"], *roles["lti"]) if n not in found]
  pairs = []
  for s in roles["selective"]:
    for lti in roles["lti"]:
      if s in missing or lti in missing:
        continue
      how = stats.compare(found[s]["accuracy"], found[lti]["accuracy"])
      side = {"higher": "for", "lower": "against"}.get(how, "open")
      if found[lti]["status"] == "solved":
        side = "against"
      pairs.append({"selective": s, "lti": lti, "comparison": how, "side": side})
  status = lambda names, *which: [n for n in names if n in found  # noqa: E731
                                  and found[n]["status"] in which]
  unlearnt = status(roles["selective"], "not above chance")
  few_seeds = status((*roles["selective"], *roles["lti"]), "undecided")
  if any(p["side"] == "against" for p in pairs):
    outcome = "not reproduced"
  elif (not missing and pairs and all(p["side"] == "for" for p in pairs) and not unlearnt
        and not few_seeds):
    outcome = "reproduced"
  else:
    outcome = "undecided"
  # The same test for one selective model at a time (against every LTI model): which of them
  # the overall outcome rests on (Mamba's Table 1 is about S6; other selective layers are
  # other papers' claims).
  lti_unsure = [n for n in roles["lti"] if n in missing or n in few_seeds]
  by_selective = {}
  for s in roles["selective"]:
    own = [p["side"] for p in pairs if p["selective"] == s]
    if "against" in own:
      by_selective[s] = "not reproduced"
    elif (s not in missing and own and all(side == "for" for side in own) and s not in unlearnt
          and s not in few_seeds and not lti_unsure):
      by_selective[s] = "reproduced"
    else:
      by_selective[s] = "undecided"
  return {"outcome": outcome, "pairs": pairs, "missing": missing, "unlearnt": unlearnt,
          "few_seeds": few_seeds, "lti_solved": status(roles["lti"], "solved"),
          "by_selective": by_selective}


def _model_fields(model: Any) -> dict[str, Any]:
  """The fields of a run's model group (a dict or ConfigDict), without its name."""
  return {k: v for k, v in model.items() if k != "name"}


def run(study: runner.Study) -> dict[str, Any]:
  roles = study.config.anchor_models(study.scale)
  role_of = {n: role for role, names in roles.items() for n in names}
  anchors = study.settings.anchors
  runs = study.runs(SWEEP)
  found: dict[str, dict[str, Any]] = {}
  task = dict(anchors.task.to_dict())
  setting = None
  chance = (build.task_settings(config_dict.ConfigDict(runs[0].config["task"])).chance_accuracy
            if runs else None)
  for member in runs:
    if not member.finished:
      continue
    config = workdir_lib.load_config(member.workdir)
    settings = build.task_settings(config.task)
    summary = runner.run_summary(member)
    evals = [summary["eval_by_seed"][k] for k in sorted(summary["eval_by_seed"], key=int)]
    examples = int(config.eval_batch_size * config.num_eval_batches)
    accuracy = stats.seed_summary([m["accuracy"] for m in evals], examples=examples)
    setting = setting or {"steps": config.num_train_steps, "batch_size": config.batch_size,
                          "num_seeds": config.num_seeds, "examples_per_seed": examples,
                          "seq_len": settings.seq_len}
    found[member.model] = {
        "role": role_of.get(member.model, "reference"),
        "accuracy": accuracy,
        "status": _status(accuracy, chance),
        "seeds_solved": stats.learnt_count(accuracy, SOLVED)[0],
        "num_seeds": len(evals),
        "num_params": summary.get("num_params"),  # None in runs written before it was kept
        "learning_rate": config.optimizer.learning_rate,
        "fields": _model_fields(config.model),
        "run": study.relpath(member.workdir),
    }
  spectra = {}
  for member in runs:  # the models as trained here, at their initialisation
    fields = _model_fields(member.config["model"])
    checked = spectrum_checks(member.model, models.model_settings(member.model, **fields),
                              seed=member.config["seed"])
    if checked is not None:
      spectra[member.model] = {**checked, "fields": fields}
  return {
      "task": task,
      "chance": chance,
      "solved": SOLVED,
      "setting": setting,
      "roles": {role: list(names) for role, names in roles.items()},
      "models": found,
      "direction": direction(found, roles),
      "published": PUBLISHED,
      "spectra": spectra,
      "not_reproduced": [{"anchor": a, "what": w, "why": y} for a, w, y in NOT_REPRODUCED],
      "runs": sorted(m["run"] for m in found.values()),
      "failed_runs": runner.failed_runs(study, runs),
  }


def _ordered(results: dict[str, Any]) -> list[str]:
  """Models with a finished run: by role (selective, LTI, reference), table order within."""
  return [n for role in results["roles"] for n in variants.ordered(results["roles"][role])
          if n in results["models"]]


def figures(results: dict[str, Any], out_dir: str) -> list[str]:
  names = _ordered(results)
  if not names:
    return []
  fig, (ax,) = plots.figure(width=max(4.0, 0.9 * len(names) + 1.5))
  for i, name in enumerate(names):
    plots.errorbar(ax, name, [i], [results["models"][name]["accuracy"]], learnt=SOLVED)
  ax.axhline(results["chance"], color="0.4", ls="--", label="chance $1/A$")
  ax.axhline(SOLVED, color="0.6", ls=":", label=f"solved ({SOLVED})")
  ax.set_xticks(range(len(names)), [f"{variants.variant(n).label}\n"
                                    f"{ROLE_SHORT[results['models'][n]['role']]}" for n in names],
                fontsize=7)
  task = results["task"]
  ax.set(ylabel="accuracy on the $M$ outputs", ylim=(0, 1.05),
         title=f"Selective copying, $C = {task['context_len']}$, $M = {task['copy_length']}$, "
               f"$A = {task['num_symbols']}$")
  ax.legend(fontsize=6)
  return [plots.save(fig, os.path.join(out_dir, "anchors_selective_copy.png"))]


def tables(results: dict[str, Any]) -> str:
  out = []
  task, setting = results["task"], results["setting"]
  names = _ordered(results)
  if names:
    rows = [[variants.variant(n).label, ROLE_WORDS[m["role"]], str(m["num_params"] or "–"),
             stats.pm(m["accuracy"], learnt=SOLVED),
             f"{m['seeds_solved']} of {m['num_seeds']}", m["status"]]
            for n in names for m in [results["models"][n]]]
    out += [f"Selective copying (Gu & Dao 2023): M = {task['copy_length']} symbols of "
            f"A = {task['num_symbols']} among C = {task['context_len']} positions, "
            f"{setting['steps']} steps of batch {setting['batch_size']}, "
            f"{setting['num_seeds']} seeds, {setting['examples_per_seed']} evaluation "
            f"sequences per seed; accuracy on the M outputs (mean ± 95% CI over seeds, "
            f"binomial combined), chance {stats.fmt(results['chance'], '.3f')}, solved: "
            f"interval at or above {SOLVED}.",
            markdown.table(["model", "role", "parameters", "accuracy",
                            f"seeds >= {SOLVED:g}", "status"], rows)]
  else:
    out.append("No selective-copying run finished.")
  pub = results["published"]
  setting_p = pub["setting"]
  out += [f"Published ({pub['source']}; L = {setting_p['sequence_length']}, vocabulary "
          f"{setting_p['vocab_size']}, {setting_p['symbols_to_copy']} symbols, "
          f"{setting_p['num_layers']} layers, D = {setting_p['d_model']}, "
          f"{setting_p['steps']} steps): " +
          "; ".join(f"{k} {v}" for k, v in pub["accuracy_percent"].items()) +
          ". Feng et al. 2024, 2 layers (" + pub["feng_2024_evidence"] + "): " +
          "; ".join(f"{k} {v}" for k, v in pub["feng_2024_two_layers_percent"].items()) + "."]
  if results["spectra"]:
    rows = [[variants.variant(n).label, c["quantity"], stats.fmt(c["measured"], ".4g"),
             c["expected"], "pass" if c["pass"] else "**fail**"]
            for n in variants.ordered(results["spectra"])
            for c in results["spectra"][n]["checks"]]
    out += ["Spectra at initialisation, measured from the models this section trains, freshly "
            "built (every layer pooled). Pass rule: every check within its bound.",
            markdown.table(["model", "quantity", "measured", "expected (paper)", "check"],
                           rows)]
  out.append("Not reproduced here:\n\n" + "\n".join(
      f"- {item['anchor']}: {item['what']}. Why not: {item['why']}"
      for item in results["not_reproduced"]))
  return "\n\n".join(out)


def verdict(results: dict[str, Any]) -> verdicts.Verdict:
  v = verdicts.Verdict(results)
  _selective_copy_verdict(v, results)
  _spectrum_verdict(v, results)
  v.say("The Long Range Arena (LRU, S5), Mamba's induction heads to 2^20 tokens and Zoology at "
        "vocabulary 8192 are not reproduced here: the list above says why.")
  if results["failed_runs"]:
    v.say(f"{len(results['failed_runs'])} run(s) failed and are left out.")
  return v


def _selective_copy_verdict(v: verdicts.Verdict, results: dict[str, Any]) -> None:
  label = lambda n: variants.variant(n).label  # noqa: E731
  percent = lambda key: v.number(f"published.accuracy_percent.{key}", ".1f")  # noqa: E731
  paper = (f"Gu & Dao (2023, Table 1) report {percent('S4, no gate')}% "
           f"for S4 and {percent('S6, no gate')}% for S6 "
           f"(no gate) at L = {v.number('published.setting.sequence_length', 'd')} after "
           f"{v.number('published.setting.steps', 'd')} steps")
  names = _ordered(results)
  if not names:
    v.say(f"{paper}. No selective-copying run finished here: undecided.")
    return
  v.say(f"{paper}; ours is much smaller: C = {v.number('task.context_len', 'd')}, "
        f"M = {v.number('task.copy_length', 'd')}, A = {v.number('task.num_symbols', 'd')}, "
        f"{v.number('setting.steps', 'd')} steps, chance {v.number('chance', '.3f')}. "
        "Accuracy on the M outputs: " + "; ".join(
            f"{label(n)} ({ROLE_SHORT[results['models'][n]['role']]}) "
            f"{v.pm(f'models.{n}.accuracy')}, {results['models'][n]['status']}"
            for n in names) + " (mean ± 95% CI).")
  d = results["direction"]
  test = ("test: every selective model's 95% interval above every LTI model's and above "
          "chance, and no LTI model solving the task (interval at or above "
          f"{v.number('solved', '.1f')})")
  sides = lambda side: ", ".join(  # noqa: E731
      f"{label(p['selective'])} vs {label(p['lti'])} ({p['comparison']})"
      for p in d["pairs"] if p["side"] == side)
  if d["outcome"] == "reproduced":
    v.say(f"The direction of Mamba's Table 1 is reproduced at this scale ({test}).")
  elif d["outcome"] == "not reproduced":
    v.say(f"The direction of Mamba's Table 1 is not reproduced at this scale ({test}): against "
          f"it {sides('against')}" + (f"; intervals not apart: {sides('open')}"
                                      if any(p["side"] == "open" for p in d["pairs"]) else "") +
          ("; solved by the LTI model(s) " + ", ".join(
              label(n) for n in d["lti_solved"]) + ". Longer contexts (Table 1 used L = 4096) "
           "make the LTI models' task harder; at this size a short context may let them solve "
           "it" if d.get("lti_solved") else "") + ".")
  else:
    _undecided_direction(v, d, test, sides, label)
  by = d.get("by_selective", {})
  if d["outcome"] != "reproduced" and len(by) > 1:
    groups = {o: [label(n) for n in by if by[n] == o]
              for o in ("reproduced", "not reproduced", "undecided")}
    v.say("Model by model (the same test for one selective model at a time, against every LTI "
          "model): " + "; ".join(f"{o} for {', '.join(names)}" for o, names in groups.items()
                                 if names) + ".")


def _undecided_direction(v: verdicts.Verdict, d: dict[str, Any], test: str, sides,
                         label) -> None:
  """The undecided outcome's sentence: why the test cannot decide."""
  why = []
  if d["missing"]:
    why.append("no finished run of " + ", ".join(label(n) for n in d["missing"]))
  if d["unlearnt"]:
    why.append("not above chance: " + ", ".join(label(n) for n in d["unlearnt"]))
  if d.get("few_seeds"):
    why.append("fewer than two finite seeds: " + ", ".join(label(n) for n in d["few_seeds"]))
  if any(p["side"] == "open" for p in d["pairs"]):
    why.append("intervals not apart: " + sides("open"))
  v.say(f"Whether the direction of Mamba's Table 1 holds is undecided at this scale ({test}; "
        + "; ".join(why) + "). More steps and seeds, or a longer context, would decide.")


def _spectrum_verdict(v: verdicts.Verdict, results: dict[str, Any]) -> None:
  label = lambda n: variants.variant(n).label  # noqa: E731
  for n in variants.ordered(results["spectra"]):
    checks = results["spectra"][n]["checks"]
    parts = ", ".join(f"{c['quantity']} {v.number(f'spectra.{n}.checks.{i}.measured', '.4g')}"
                      for i, c in enumerate(checks))
    failed = [c["quantity"] for c in checks if not c["pass"]]
    v.say(f"{label(n)} at initialisation: {parts}; " +
          ("every check passes." if not failed else
           "FAILS " + ", ".join(failed) + " (against its paper's initialisation)."))
