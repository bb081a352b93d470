"""The study "Why attention beats RNNs/LSTMs": restore runs, probe them, decide, write REPORT.md.

  variants.py             the compared variants: every model of `models.MODELS`, plus explicit
                          variants of a table model (lstm_chrono, transformer_learned, ...)
  restore.py              rebuild a trained run (every seed) and evaluate it at any distance
  probes.py               gradient path and attention mass of a restored run
  state_size.py           floats a model holds between tokens (carry or key-value cache)
  checkpoint_analysis.py  one run's analysis.json and figures (scripts/analyze.py)
  stats.py                summaries over seeds (non-finite seeds counted), comparisons, numbers
  verdicts.py             verdict paragraphs whose every number is traced to results.json
  plots.py, markdown.py   figures (one colour per model) and tables
  runner.py               one scale of the study in one directory: its runs, trained by sweeps
  report.py               analyse every experiment and write REPORT.md

The library holds no list of experiments and reads no file of the repository: scripts/report.py
imports `configs.study` and the `experiments` package and hands them to `runner.Study`.

Legend (as in the rest of the code base): S seeds, B batch, T time, L layers, H heads.
"""
