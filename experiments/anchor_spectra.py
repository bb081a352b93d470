"""Part 2 of the anchors section (experiments/anchors.py): initial spectra against their papers.

No training: a freshly built model of the table is measured. LRU (Orvieto et al. 2023,
Lemma 2): eigenvalues on the ring [r_min, r_max] with phases in [0, max_phase] and
area-uniform radii, gamma = sqrt(1 - |lambda|^2). S6 (Gu & Dao 2023): A = -(n + 1)
(S4D-real) and step sizes softplus(b_Δ) in [dt_min, dt_max].
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from flax import nnx

from seqresearch import models
from seqresearch.models.lru import LRULayer
from seqresearch.models.s6 import S6Layer


def _lru_checks(layers: list[LRULayer], settings: Any) -> list[dict[str, Any]]:
  lam = np.concatenate([np.asarray(layer.lam()) for layer in layers])
  radius = np.abs(lam)
  phase = np.mod(np.angle(lam), 2 * math.pi)
  gamma = np.concatenate([np.exp(np.asarray(layer.gamma_log_N[...])) for layer in layers])
  r_min, r_max, max_phase = settings.r_min, settings.r_max, settings.max_phase
  # Area-uniform ring (Lemma 2): |lambda|^2 ~ U[r_min^2, r_max^2]; its mean within 4 standard
  # errors. Uniform radii instead (a known port error) move the mean by about 6 of them here.
  r2_mean = (r_min ** 2 + r_max ** 2) / 2
  r2_se = (r_max ** 2 - r_min ** 2) / math.sqrt(12 * lam.size)
  tol = 1e-6  # float32 rounding of exp(-exp(nu_log))
  gamma_error = float(np.abs(gamma - np.sqrt(1 - radius ** 2)).max())
  return [
      _check("smallest modulus of λ", float(radius.min()), f">= r_min = {r_min:g}",
             radius.min() >= r_min - tol),
      _check("largest modulus of λ", float(radius.max()), f"<= r_max = {r_max:g}",
             radius.max() <= r_max + tol),
      _check("mean squared modulus of λ", float((radius ** 2).mean()),
             f"{r2_mean:.3f} ± {4 * r2_se:.3f} (area-uniform ring, 4 s.e.)",
             abs((radius ** 2).mean() - r2_mean) <= 4 * r2_se),
      _check("largest phase of λ (rad)", float(phase.max()),
             f"in [0, max_phase = {max_phase:.3f}]", bool(((phase >= 0) &
                                                          (phase <= max_phase + 1e-5)).all())),
      _check("largest error of γ = sqrt(1 - r²)", gamma_error, "<= 1e-5", gamma_error <= 1e-5),
  ]


def _s6_checks(layers: list[S6Layer], settings: Any) -> list[dict[str, Any]]:
  a = np.stack([-np.exp(np.asarray(layer.a_log_ExN[...])) for layer in layers])  # LxExN
  expected = -np.arange(1, a.shape[-1] + 1, dtype=np.float64)
  error = float(np.abs(a - expected).max())
  dt = np.concatenate([np.logaddexp(0.0, np.asarray(layer.dt_bias_E[...], np.float64))
                       for layer in layers])  # softplus(b_dt): Delta at a zero input
  lo, hi = settings.dt_min, settings.dt_max
  return [
      _check("largest error of A[e, n] = -(n + 1)", error, "<= 1e-5 · N (S4D-real)",
             error <= 1e-5 * a.shape[-1]),
      _check("smallest softplus(b_Δ)", float(dt.min()), f">= dt_min = {lo:g}",
             dt.min() >= lo * (1 - 1e-4)),
      _check("largest softplus(b_Δ)", float(dt.max()), f"<= dt_max = {hi:g}",
             dt.max() <= hi * (1 + 1e-4)),
  ]


# One explicit table: the layer class whose initialisation a paper pins, and its checks.
SPECTRUM_CHECKS = {LRULayer: _lru_checks, S6Layer: _s6_checks}


def _check(quantity: str, measured: float, expected: str, passed: Any) -> dict[str, Any]:
  return {"quantity": quantity, "measured": measured, "expected": expected,
          "pass": bool(passed)}


def spectrum_checks(name: str, settings: Any, seed: int = 0) -> dict[str, Any] | None:
  """The initial spectrum of table model `name` at `settings`, checked against its paper.

  Builds the model (vocabulary 4: the readout plays no part) with parameters from `seed`
  and measures every layer of the table entry's layer class.

  Returns:
    {'layers': count, 'checks': [{'quantity', 'measured', 'expected', 'pass'}], 'pass': all
    checks pass}, or None when no paper check is known for the model's layer class
    (SPECTRUM_CHECKS).
  """
  layer_class = models.entry(name).layer
  if layer_class not in SPECTRUM_CHECKS:
    return None
  model = models.build_model(settings, vocab_size=4, rngs=nnx.Rngs(jax.random.key(seed)))
  layers = [node for _, node in nnx.iter_graph(model) if isinstance(node, layer_class)]
  checks = SPECTRUM_CHECKS[layer_class](layers, settings)
  return {"layers": len(layers), "checks": checks, "pass": all(c["pass"] for c in checks)}
