"""The study's experiments, one module per research question (imported by scripts/report.py)."""
