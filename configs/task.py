"""Any task of the table at its settings' defaults, with any model: no config file of its own.

  python scripts/train.py --config=configs/task.py:lstm,task=mqar --workdir=runs/mqar-lstm
  python scripts/train.py --config=configs/task.py:s6,task=induction,tiny,length=32 \
      --workdir=runs/induction-s6

Argument: MODEL,task=NAME[,tiny][,field=value][,group.field=value]
  NAME is any key of seqresearch.tasks.SETTINGS; the task's fields take the defaults of its
  settings dataclass (its docstring documents them), so a task added to the table trains
  from here at once. A bare `field=value` sets a task field. `tiny` shrinks the model and
  the run (not the task). The tasks' own files (configs/copy.py, configs/mqar.py, ...) choose
  experiment defaults, options and sweeps.
"""

from ml_collections import config_dict

from seqresearch import configlib


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  parsed = configlib.parse_arg(arg, task=str, tiny=bool)
  if parsed.options["task"] is None:
    raise ValueError("config argument task=NAME is missing: configs/task.py:MODEL,task=NAME "
                     "(NAME one of seqresearch.tasks.SETTINGS).")
  config = configlib.run_config(parsed.model, configlib.task_config(parsed.options["task"]))
  if parsed.options["tiny"]:
    configlib.make_tiny(config)
  configlib.apply_overrides(config, parsed.overrides)
  return config
