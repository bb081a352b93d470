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


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  model, options = configlib.parse_arg(arg, default_model="lstm")
  config = configlib.base_config()
  config.task = config_dict.ConfigDict()
  config.task.name = "agreement"  # Which generator: copy or agreement.
  config.task.min_distance = 10  # Shortest subject-to-verb distance (tokens).
  config.task.max_distance = 20  # Longest subject-to-verb distance.
  config.task.min_nouns = 1  # Fewest intervening nouns (one per modifier).
  config.task.max_nouns = 3  # Most intervening nouns; needs min_distance - 1 >= 3 * max_nouns.
  config.task.min_attractors = 0  # Fewest attractors (intervening nouns of the other number).
  config.task.max_attractors = 3  # Most attractors.
  config.task.mode = "balanced"  # 'balanced' (no shortcut works) or 'natural' (rare attractors).
  config.task.attractor_prob = 0.1  # Natural mode: chance that an intervening noun is an attractor.
  config.task.max_prefix = 4  # Up to this many filler tokens before the subject.
  config.task.num_nouns = 20  # Noun lemmas (each with a singular and a plural form).
  config.task.num_verbs = 10  # Verb lemmas used inside relative clauses.
  config.task.num_preps = 8  # Prepositions.
  config.task.num_adjs = 8  # Adjectives (filler inside the modifiers).
  config.task.num_advs = 8  # Adverbs (filler before the subject).
  config.model = configlib.model_config(model)

  config.batch_size = 64
  config.num_train_steps = 2000
  config.optimizer.learning_rate = 3e-3 if model != "transformer" else 1e-3
  config.optimizer.warmup_steps = 0 if model != "transformer" else 100

  if "distance" in options:
    config.task.min_distance = config.task.max_distance = int(options.pop("distance"))
  if "tiny" in options:
    options.pop("tiny")
    configlib.make_tiny(config)
    config.task.min_distance, config.task.max_distance = 7, 10
    config.task.max_nouns = 2
    config.task.max_attractors = 2
  for path, value in options.items():
    configlib.apply_dotted(config, path if "." in path else f"task.{path}", value)
  return config



def get_sweep(arg: str | None = None) -> list[dict]:
  """Models x training mode x 3 seeds: accuracy by distance and by attractor count."""
  del arg
  return [{"model": model, "task.mode": mode, "seed": seed}
          for model in ("lstm", "transformer")
          for mode in ("balanced", "natural")
          for seed in range(3)]
