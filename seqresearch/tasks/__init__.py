"""Synthetic sequence tasks: pure, jittable `make_batch(key, settings, batch_size) -> Batch`.

`SETTINGS` maps a task name (`config.task.name`) to its frozen settings class: the one table of
tasks. A settings class is the task's whole interface: besides its fields it has `vocab_size`,
`seq_len`, `max_distance`, `trained_distances`, `chance_accuracy`, `at_distance(d)`,
`eval_constants()` and `make_batch(key, batch_size)`; nothing dispatches on its type. A
regression task (adding) says so in its batches (`Batch.regression_targets`), and
`evaluation` scores it from the model's output channel 0.
"""

from __future__ import annotations

import jax

from seqresearch.tasks import adding
from seqresearch.tasks import agreement
from seqresearch.tasks import copy
from seqresearch.tasks import induction
from seqresearch.tasks import long_copy
from seqresearch.tasks import mqar
from seqresearch.tasks import selective_copy
from seqresearch.tasks.adding import AddingSettings
from seqresearch.tasks.agreement import AgreementSettings
from seqresearch.tasks.base import Batch
from seqresearch.tasks.copy import CopySettings
from seqresearch.tasks.copy import memoryless_baseline
from seqresearch.tasks.induction import InductionSettings
from seqresearch.tasks.long_copy import LongCopySettings
from seqresearch.tasks.mqar import MQARSettings
from seqresearch.tasks.selective_copy import SelectiveCopySettings

TaskSettings = (CopySettings | AgreementSettings | MQARSettings | SelectiveCopySettings
                | InductionSettings | LongCopySettings | AddingSettings)

SETTINGS = {"copy": CopySettings, "agreement": AgreementSettings, "mqar": MQARSettings,
            "selective_copy": SelectiveCopySettings, "induction": InductionSettings,
            "long_copy": LongCopySettings, "adding": AddingSettings}


def make_batch(key: jax.Array, settings: TaskSettings, batch_size: int) -> Batch:
  """Draws a batch of the task that `settings` describes.

  Pure and jittable with `settings` and `batch_size` static.

  Args:
    key: PRNG key.
    settings: an instance of a class in SETTINGS.
    batch_size: B.

  Returns:
    Batch with [B, settings.seq_len] fields.
  """
  if type(settings) not in SETTINGS.values():
    raise TypeError(f"make_batch: unknown task settings {type(settings).__name__}; "
                    f"expected one of {[cls.__name__ for cls in SETTINGS.values()]}.")
  return settings.make_batch(key, batch_size)


__all__ = [
    "AddingSettings", "AgreementSettings", "Batch", "CopySettings", "InductionSettings",
    "LongCopySettings", "MQARSettings", "SETTINGS", "SelectiveCopySettings", "TaskSettings",
    "adding", "agreement", "copy", "induction", "long_copy", "make_batch",
    "memoryless_baseline", "mqar", "selective_copy",
]
