"""Trains one run: python scripts/train.py --config=configs/copy.py:lstm --workdir=runs/copy-lstm

Rerunning the same command resumes from the latest checkpoint; --restart moves the old run
aside. Behaviour (resume, preemption, exit statuses): seqresearch/train_cli.py's docstring;
`--help` lists the flags (and, as every absl program, exits with status 1).
"""

import os
import sys

# configs/ (a package of this repository) is importable by config files that share code.
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from seqresearch import train_cli  # noqa: E402

flags.adopt_module_key_flags(train_cli)  # --help lists the training flags

if __name__ == "__main__":
  train_cli.run()
