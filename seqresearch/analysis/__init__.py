"""Measurement core of the study: the quantities of Vaswani et al. 2017, Table 1.

  flops.py           exact FLOP counts (scan bodies × length) and sequential / dataflow depth,
                     by walking the jaxpr: FLOPs per layer and sequential operations.
  layer_costs.py     one recurrent or attention layer at (n, d) as a traceable program, the
                     analytic matmul formulas and the crossover n*.
  gradient_path.py   ∂loss_t / ∂x_{t-k} by lag k and at the true source: maximum path length.
  attention_mass.py  attention weight on the true dependency source, by distance; heatmaps.
  fits.py            mean ± t confidence interval across seeds, power-law / exponential fits.
"""
