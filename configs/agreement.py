"""Distant subject-verb agreement with attractors (Linzen et al. 2016, synthetic grammar).

  python scripts/train.py --config=configs/agreement.py:lstm --workdir=runs/agree-lstm

Argument: MODEL[,distance=N][,mode=balanced|natural][,tiny][,any.dotted.field=value]
  The model reads a subject, then modifiers whose nouns may be attractors (opposite number),
  then must predict the verb's number at the query token. `distance=N` fixes the subject-verb
  distance; by default it is drawn per example from [min_distance, max_distance]. Evaluation
  reports accuracy by distance and by attractor count.

Sweep (models x balanced/natural training x seeds):

  python scripts/sweep.py --config=configs/agreement.py --workdir=runs/agree-sweep
"""

from ml_collections import config_dict

from seqresearch import configlib
from seqresearch import models


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  parsed = configlib.parse_arg(arg, distance=int, mode=str, tiny=bool)
  task = config_dict.ConfigDict()
  task.name = "agreement"  # Which generator: copy or agreement.
  task.min_distance = 10  # Shortest subject-to-verb distance (tokens).
  task.max_distance = 20  # Longest subject-to-verb distance.
  task.min_nouns = 1  # Fewest intervening nouns (one per modifier).
  task.max_nouns = 3  # Most intervening nouns; needs min_distance - 1 >= 3 * max_nouns.
  task.min_attractors = 0  # Fewest attractors (intervening nouns of the other number).
  task.max_attractors = 3  # Most attractors.
  task.mode = "balanced"  # 'balanced' (no shortcut works) or 'natural' (rare attractors).
  task.attractor_prob = 0.1  # Natural mode: chance that an intervening noun is an attractor.
  task.max_prefix = 4  # Up to this many filler tokens before the subject.
  task.num_nouns = 20  # Noun lemmas (each with a singular and a plural form).
  task.num_verbs = 10  # Verb lemmas used inside relative clauses.
  task.num_preps = 8  # Prepositions.
  task.num_adjs = 8  # Adjectives (filler inside the modifiers).
  task.num_advs = 8  # Adverbs (filler before the subject).
  config = configlib.run_config(parsed.model, task)
  config.batch_size = 64
  config.num_train_steps = 2000

  # Order: `tiny` first, then the options and overrides given, so none is silently undone.
  if parsed.options["tiny"]:
    configlib.make_tiny(config)
    task.min_distance, task.max_distance = 7, 10
    task.max_nouns = 2
    task.max_attractors = 2
  if parsed.options["distance"] is not None:
    task.min_distance = task.max_distance = parsed.options["distance"]
  if parsed.options["mode"] is not None:
    task.mode = parsed.options["mode"]
  configlib.apply_overrides(config, parsed.overrides)
  return config


def get_sweep(arg: str | None = None) -> list[dict]:
  """Models x training mode x 3 seeds: accuracy by distance and by attractor count."""
  del arg
  return [{"model": model, "task.mode": mode, "seed": seed}
          for model in models.names()
          for mode in ("balanced", "natural")
          for seed in range(3)]
