"""Config files: `--config=configs/NAME.py:ARG`; importable as `configs.NAME` from the repository root."""
