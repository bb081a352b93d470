"""The runs and analysis settings of the study "Why attention beats RNNs/LSTMs", per scale.

  python scripts/report.py --scale=quick --workdir=runs/study-quick

runs every sweep named here that its experiments need (experiments/*.py say which), then
analyses them. One sweep can be run alone like any other:

  python scripts/sweep.py --config=configs/study.py:sweep=long_range_copy,scale=quick \
      --workdir=runs/study-quick/runs/long_range_copy --parallel=2

Sweep argument: sweep=NAME[,scale=smoke|quick|standard|full][,learning_rates=PATH]. A member's
argument puts its model in front (MODEL,sweep=NAME,scale=SCALE[,any.dotted.field=value]) and
starts from the task's own config (configs.copy, configs.agreement, configs.mqar for the
capacity sweep, configs.long_copy for capacity_copy, the scale's extrapolation task:
configs.induction or configs.copy, configs.selective_copy for the anchors, the pilot's task for
learning_rate), resized to the scale.

Learning rates: at a scale whose `learning_rate.rates` holds two or more values (standard,
full), the `learning_rate` sweep trains every table model and long-range variant at each rate
on one pilot task; the study (seqresearch.study.runner) trains it first, picks each variant's
rate (seqresearch.study.tuning: lowest mean final loss over seeds) into
<workdir>/learning_rates.json, and every other sweep of the scale needs that file
(learning_rates=PATH) and trains each variant at its rate (a variant not in the pilot: its
model's). Smoke and quick train each model at its table rate.

Which models: every model of `seqresearch.models.MODELS` ('all': standard, full), the first
model of each family ('one_per_family': smoke), or a named tuple of table models (quick, sized
to its 20 minutes), plus the explicit variants of a table model named per experiment
(`seqresearch.study.variants.EXTRA`: lstm_chrono, transformer_learned, ...). A model added to
the table takes part at standard and full with nothing edited here (at smoke too if it opens
a new family; at quick only once named): its sizes are those of its family below, or of
"other" for a family not listed (at the smoke scale: its table `tiny`).

Scales:
  smoke     tiny models and tens of steps: checks the pipeline only (a banner, no verdicts).
  quick     the whole report in under 20 minutes on a 2-core CPU (43 runs; 989 s idle at
            38e9152, 1142 s in an earlier run at load 0.95, 2026-11-30), with five models of
            the table (every family); shows each effect's direction.
  standard  what the conclusions rest on without an accelerator: 5 seeds, tuned learning rates,
            agreement to distance 100; about 3 hours on a 2-core CPU, in resumable pieces
            (see its comment below).
  full      the sizes and budgets of an accelerator.
"""

from typing import Any

from ml_collections import config_dict

from configs import agreement as agreement_config
from configs import copy as copy_config
from configs import induction as induction_config
from configs import long_copy as long_copy_config
from configs import mqar as mqar_config
from configs import selective_copy as selective_copy_config
from seqresearch import build
from seqresearch import configlib
from seqresearch import models
from seqresearch import tasks
from seqresearch.study import runner
from seqresearch.study import tuning
from seqresearch.study import variants

TASK_CONFIGS = {"copy": copy_config, "agreement": agreement_config, "mqar": mqar_config,
                "induction": induction_config, "long_copy": long_copy_config,
                "selective_copy": selective_copy_config}
# Tasks on which length extrapolation tests positions (agreement's longer distances only add
# fillers): the extrapolation sweep trains on one of them.
POSITION_TASKS = ("copy", "induction")

SCALES = {
    "smoke": {
        "pipeline_check_only": True,  # REPORT.md: a banner and no verdicts
        "models": "one_per_family",  # of the table: 'all', 'one_per_family' or a tuple of names
        "train": {
            # Seeds per run, vmapped in one program. Smoke runs are almost all compile time,
            # and one seed compiles 40% faster than three; their intervals are then null.
            "num_seeds": 1,
            "batch_size": 16,  # training examples per step
            "eval_batch_size": 32,  # examples per evaluation batch
            # Evaluation batches (end of training only). Other scales put >= 500 examples
            # behind every reported cell; the smoke scale checks the pipeline only.
            "num_eval_batches": 1,
            # Training steps by task, for recurrent models and for the others (attention ...).
            # Recurrent models take more, cheaper steps; agreement scores one position per
            # example (copy: ten), so it needs more of them.
            "recurrent_steps": {"copy": 20, "agreement": 20, "mqar": 20, "long_copy": 20},
            "parallel_steps": {"copy": 20, "agreement": 20, "mqar": 20, "long_copy": 20},
            "warmup_steps": 5,  # learning-rate warmup of models whose table entry warms up
            # Save a checkpoint every this many steps (0: at the end only), so that a killed
            # run resumes near where it stopped; a presentation field: no run identity changes.
            "checkpoint_every_steps": 0,
            # Model sizes by family (fields a model does not declare are skipped); a family
            # not listed takes "other", or without it the model's table `tiny` sizes.
            "sizes": {
                "recurrent": {"embed_dim": 8, "hidden_size": 16},
                "attention": {"d_model": 16, "num_heads": 2, "mlp_dim": 32, "num_layers": 2},
            },
        },
        "long_range": {
            "copy_extra_variants": (),  # variants of a table model (study.variants.EXTRA)
            "copy_delays": (3, 8),  # one run per delay T; distance T + L
            "agreement_extra_variants": (),
            "agreement_distances": (7, 12),  # trained and evaluated over this range
            "agreement_max_nouns": 2,  # most intervening nouns (and attractors)
            "agreement_bin_width": 1,  # distances per reported cell (>= 500 examples each)
        },
        "extrapolation": {
            # Trained here on a task that needs positions (see quick); smoke: the pipeline.
            "task": "induction",  # 'induction' or 'copy' (variable delay)
            "train_distances": (1, 6),  # induction: every distance 1 .. D, length D + 2
            "task_fields": {},  # further task fields (configs/<task>.py defaults otherwise)
            # Besides every positional encoding of attention (study.variants.EXTRA): the
            # scale's 'recurrent' models (the essay's recurrent side), 'all' or 'none'.
            "reference": "recurrent",
            "recurrent_steps": 20,  # training steps of recurrent models and of the others
            "parallel_steps": 20,
            "eval_distances": (6, 24),  # the longest trained distance D, and 4·D
            "num_eval_batches": 1,  # evaluation batches (of eval_batch_size) per distance
        },
        "gradient_path": {"num_examples": 8},  # copy examples at the longest long_range delay
        "attention_maps": {
            "num_examples": 8,  # examples per probe batch
            "agreement_points": 2,  # distances probed across the agreement run's range
        },
        "parallelism": {
            "lengths": (16, 32),  # sequence lengths n to time
            # Model widths d (hidden size, d_model), so that n < d, n ≈ d and n > d occur.
            "widths": (8, 32),
            "batch_size": 4,
            "repetitions": 2,  # timed calls per point (after one warm-up): min/median/max
            "max_dataflow_length": 32,  # dataflow depth is walked step by step: cap n there
        },
        "learning_rate": {
            # Peak rates tried per variant (seqresearch.study.tuning); () or one rate: each model
            # trains at its table rate, no sweep. Smoke: none (tests check the tuning on its own).
            "rates": (),
            "task": "agreement",  # the pilot task, trained at its budget of this scale
            "task_fields": {},  # its fields (the task config's defaults otherwise)
            "num_seeds": 1,  # seeds per pilot run
        },
        "capacity": {
            # Long-string copy (configs/long_copy.py; Jelassi et al. 2024): one run per model and
            # size, strings of every length L in `lengths` (uniform); accuracy by L in bins of
            # `bin_width` lengths.
            "long_copy": {"lengths": (2, 6), "bin_width": 1, "task": {"num_symbols": 6}},
            # MQAR (configs/mqar.py): one run per model, state size and number of pairs K.
            "models": "study",  # the scale's models, or a tuple of them
            "pairs": (2, 4),  # K, key-value pairs to hold
            "length": 12,  # task.length for every K (>= 3·max K): only K varies
            "task": {},  # further MQAR fields for every run (configs/mqar.py defaults otherwise)
            # Two or more model sizes per family, smallest state first (fields a model does
            # not declare are skipped; a family not listed takes "other"). Applied on top of
            # the train sizes; the state each gives is counted by study.state_size.
            "sizes": {
                "recurrent": ({"hidden_size": 8}, {"hidden_size": 16}),
                "linear_recurrence": ({"hidden_size": 8, "state_size": 2},
                                      {"hidden_size": 16, "state_size": 8}),
                "convolution": ({"d_model": 8}, {"d_model": 16}),
                "attention": ({"d_model": 8, "num_heads": 2, "mlp_dim": 16},
                              {"d_model": 16, "num_heads": 2, "mlp_dim": 32}),
                "other": ({"hidden_size": 8, "d_model": 8, "state_size": 2},
                          {"hidden_size": 16, "d_model": 16, "state_size": 8}),
            },
        },
        "anchors": {
            # Published directions reproduced at CPU size (experiments/anchors.py). Selective
            # copying (configs/selective_copy.py; Gu & Dao 2023, Table 1): which table models are
            # selective (input-dependent), linear time-invariant (LTI), or references. Smoke:
            # one of each side, tiny, a few steps (the pipeline only).
            "selective": ("s6",),
            "lti": ("lru",),
            "reference": (),
            "task": {"context_len": 8, "copy_length": 2, "num_symbols": 4},
            "steps": 5,  # one budget for every model: the comparison is at equal budget
            "num_eval_batches": 1,  # of eval_batch_size
            "sizes": {"s6": {"d_model": 8, "state_size": 2, "dt_rank": 1, "num_layers": 1},
                      "lru": {"d_model": 8, "state_size": 4, "num_layers": 1}},
        },
        "complexity": {
            "width": 16,  # d for the sweep over n
            "lengths": (8, 16, 32, 64, 128, 256, 512),  # n for the sweep over n
            "length": 64,  # n for the sweep over d
            "widths": (4, 8, 16, 32, 64),  # d for the sweep over d
            "crossover_widths": (8, 16),  # d at which the crossover n* is located
            "depth_lengths": (8, 16, 32),  # n for sequential and dataflow depth
            # Path length t-k -> t: n and width of the (element-wise interpreted) programs.
            "path_length_n": 16,
            "path_length_width": 8,
        },
    },
    "quick": {
        "pipeline_check_only": False,
        # Sized to its 20 minutes (a run costs about 20 s of start-up and compilation before
        # its first step): the essay's LSTM, one linear recurrence (minGRU: the cheapest that
        # learns induction here), Table 1's convolution and both attentions, so every family
        # and claim is smoked; the other table models take part at standard and full (S6 and
        # the LRU in this scale's anchors block).
        "models": ("lstm", "mingru", "conv", "transformer", "local_attention"),
        "train": {
            "num_seeds": 3,
            "batch_size": 32,
            # Evaluation batches by task (an int: every task), >= 500 examples behind every
            # reported cell: 5632 over agreement's 11 distances (10 .. 20) is 512 per distance,
            # 1536 long-copy strings over 3 bins of 4 lengths 512 per bin; a copy or MQAR run
            # has one distance or K (512).
            "eval_batch_size": 256,
            # (induction: the extrapolation runs' own evaluation at the end of training; the
            # analysis evaluates each distance with extrapolation.num_eval_batches.)
            "num_eval_batches": {"copy": 2, "agreement": 22, "mqar": 2, "long_copy": 6,
                                 "induction": 2},
            # Timed whole on the 2-core CPU (2026-11-30; REPORT.md's header): 1142 s at load
            # 0.95, of which training the 43 runs 922 s (copy at distance 50: Transformer
            # 107 s, local attention 101 s; MQAR and long copy 14-38 s each); idle, at
            # 38e9152, 989 s, training 792 s. Agreement: 1000 recurrent
            # steps (1500 before, with the same outcome: the LSTM learns in 2 of 3 seeds).
            # Shows the direction only.
            "recurrent_steps": {"copy": 600, "agreement": 1000, "mqar": 300, "long_copy": 300},
            "parallel_steps": {"copy": 400, "agreement": 300, "mqar": 200, "long_copy": 200},
            "warmup_steps": 30,
            "checkpoint_every_steps": 0,
            "sizes": {
                "recurrent": {"embed_dim": 32, "hidden_size": 64},
                "attention": {"d_model": 64, "num_heads": 4, "mlp_dim": 128, "num_layers": 2},
                # Any other family (a model added to the table): the fields it declares.
                "other": {"embed_dim": 32, "hidden_size": 64, "d_model": 64, "num_heads": 4,
                          "mlp_dim": 128, "num_layers": 2},
            },
        },
        "long_range": {
            "copy_extra_variants": (),  # chrono init: at standard and full
            # Distances 20 and 50: within and beyond local attention's reach (2 layers of a
            # 16-position window: 30), and the shortest distance a long-range verdict reads.
            "copy_delays": (10, 40),
            "agreement_extra_variants": (),
            "agreement_distances": (10, 20),
            "agreement_max_nouns": 3,
            "agreement_bin_width": 1,  # distances per reported cell (>= 500 examples each)
        },
        "extrapolation": {
            # Induction heads, not copy: measured under a load of 12 on the 2 cores, the
            # Transformer (d_model 64, 3 seeds) reaches 0.99 .. 1.00 at step 400 on induction
            # with L = 16 (600 steps took 100 s there), the LSTM 1.00 at step 300, while on
            # variable-delay copy (distances 11 .. 40) the LSTM and the Transformer stayed
            # below 0.4 accuracy at this scale's budgets. Agreement is not used: its longer
            # distances only add fillers, so it never tests positions.
            "task": "induction",
            "train_distances": (1, 14),  # length 16: every distance 1 .. 14 trained
            "task_fields": {},
            "reference": "recurrent",
            "recurrent_steps": 400,
            "parallel_steps": 400,
            "eval_distances": (7, 14, 28, 56),  # up to 4·D; 28 and 56: lengths 30 and 58
            "num_eval_batches": 2,  # of eval_batch_size: 512 examples per distance
        },
        "gradient_path": {"num_examples": 32},
        "attention_maps": {"num_examples": 32, "agreement_points": 3},
        "parallelism": {
            # d = 32: n ≈ d, n > d; d = 128: n < d, n ≈ d, n > d. The largest attention point
            # (n = 512, d = 128: 4n²d = 2^27) costs half the former n = 1024, d = 64 one.
            "lengths": (32, 128, 512),
            "widths": (32, 128),
            "batch_size": 8,
            "repetitions": 3,
            "max_dataflow_length": 128,
        },
        "learning_rate": {
            # No sweep at this scale (20 minutes): the table's rates; the standard scale tunes.
            "rates": (),
            "task": "agreement",  # the pilot task, trained at its budget of this scale
            "task_fields": {},  # its fields (the task config's defaults otherwise)
            "num_seeds": 1,  # seeds per pilot run
        },
        "capacity": {
            # Long-string copy (configs/long_copy.py; Jelassi et al. 2024): one run per model and
            # size, strings of every length L in `lengths` (uniform); accuracy by L in bins of
            # `bin_width` lengths.
            "long_copy": {"lengths": (5, 16), "bin_width": 4, "task": {"num_symbols": 8}},
            # Measured under load: with 16 keys and values, at T = 16 and K = 4, the Transformer
            # (d_model 64) reaches 0.57 .. 0.74 in its 200 steps, the LSTM (hidden 64) stays at
            # chance 0.25; with 64 of each at T = 32 and K = 8 neither leaves chance.
            # Models: 'study' (the scale's) or a tuple of them; here one per side of the claim
            # (recurrent, linear recurrence, attention).
            "models": ("lstm", "mingru", "transformer"),
            "pairs": (2, 4),
            "length": 16,
            "task": {"num_keys": 16, "num_values": 16},
            "sizes": {
                "recurrent": ({"hidden_size": 8}, {"hidden_size": 64}),
                # LRU and S6: N (state_size) per channel; minGRU/minLSTM: hidden_size.
                "linear_recurrence": ({"hidden_size": 8, "state_size": 2},
                                      {"hidden_size": 64, "state_size": 16}),
                "convolution": ({"d_model": 16}, {"d_model": 64}),
                "attention": ({"d_model": 16, "num_heads": 2, "mlp_dim": 32},
                              {"d_model": 64, "num_heads": 4, "mlp_dim": 128}),
                "other": ({"hidden_size": 8, "d_model": 16, "state_size": 2},
                          {"hidden_size": 64, "d_model": 64, "state_size": 16}),
            },
        },
        "anchors": {
            # Selective copying at C = 32, M = 8, A = 8, 2 layers of width 32 (Mamba's Table 1:
            # L = 4096, 16 symbols, D = 64, 400k steps). Measured per training step (3 seeds,
            # batch 32, CPU time under a load of 13): S6 (d 32, N 8) 191 ms, LRU 28 ms, CNN
            # 29 ms, Transformer 39 ms, the others too little to measure; compilation about
            # 20-25 s of CPU per model. A one-seed pilot (chance 0.125): S6 0.38 at step 400
            # (0.47 at 800), LRU 0.21 (0.32 at 800): the direction shows, neither solves the
            # task at this budget. Quick trains S6, the LRU and the Transformer (standard: all
            # seven; idle, the minGRU's and the CNN's runs took 29 s and 30 s here).
            "selective": ("s6",),
            "lti": ("lru",),
            "reference": ("transformer",),
            "task": {"context_len": 32, "copy_length": 8, "num_symbols": 8},
            "steps": 400,
            "num_eval_batches": 2,  # 512 sequences (4096 scored symbols) per seed
            # Per model (fields it declares), on top of the train sizes. The CNN's receptive
            # field (kernel 8, dilations 1 and 8: 64) covers the 40 tokens.
            "sizes": {"s6": {"d_model": 32, "state_size": 8, "dt_rank": 2, "num_layers": 2},
                      "lru": {"d_model": 32, "state_size": 64, "num_layers": 2},
                      "mingru": {"embed_dim": 32, "hidden_size": 64, "num_layers": 2},
                      "minlstm": {"embed_dim": 32, "hidden_size": 64, "num_layers": 2},
                      "conv": {"d_model": 32, "kernel_size": 8, "num_layers": 2},
                      "transformer": {"d_model": 32, "num_heads": 2, "mlp_dim": 64,
                                      "num_layers": 2},
                      "lstm": {"embed_dim": 32, "hidden_size": 64, "num_layers": 2}},
        },
        "complexity": {
            "width": 64,
            "lengths": (16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
            "length": 256,
            "widths": (16, 32, 64, 128, 256, 512, 1024),
            "crossover_widths": (16, 32, 64, 128),
            "depth_lengths": (16, 32, 64, 128, 256),
            # Path length t-k -> t: n and width of the (element-wise interpreted) programs.
            "path_length_n": 32,
            "path_length_width": 8,
        },
    },
    "standard": {
        # What the conclusions rest on without an accelerator: 5 seeds, every model at the rate
        # its pilot chose (learning_rate), agreement to distance 100 with the chrono-LSTM,
        # capacity with long-string copy. Run it in resumable pieces (finished runs are
        # skipped, a killed run resumes from its last checkpoint, every 250 steps):
        #   W=runs/study-standard
        #   python scripts/report.py --scale=standard --workdir=$W --experiments=learning_rate
        #   python scripts/report.py --scale=standard --workdir=$W --experiments=long_range
        #   python scripts/report.py --scale=standard --workdir=$W --experiments=capacity
        #   python scripts/report.py --scale=standard --workdir=$W   # the rest, every analysis
        # ESTIMATE (2026-11-29, not a run of the study): process CPU time of a few train steps,
        # of the compiles and of one 18 x 256 evaluation, measured per model at these sizes at
        # T = 105 and 5 seeds (lstm 185 ms a step, rnn 104, gru 166, minGRU 206, minLSTM 235,
        # LRU 98, S6 590-785, conv 323, transformer 865, local attention 937; compile + eval
        # 25-70 s a run), scaled linearly to each run's T and seed count (checked: LSTM at
        # T = 25 and 3 seeds measured 24.5 ms against 26.4 predicted; 1 seed 34.6 ms against
        # 37), summed over every member of every sweep: learning_rate 33 runs 1630 CPU-s,
        # long_range_copy 33 runs 3470, long_range_agreement 11 runs 2330, capacity 40 runs
        # 1420, capacity_copy 20 runs 1240 — 10090 CPU-s, 1.4 h on the 2 cores (two runs at
        # a time); the other sweeps of this scale (extrapolation, about 2670 CPU-s at its
        # budgets, anchors, see its block) and the analyses (parallelism is timed alone) come
        # on top: about 3 h in all. Measured with build.build_run + steps.make_train_step and
        # time.process_time on the shared machine at load 7-18: an idle one should be faster.
        "pipeline_check_only": False,
        "models": "all",
        "train": {
            "num_seeds": 5,
            "batch_size": 32,
            # 18 x 256 = 4608 examples per seed: 512 per agreement cell (bins of 10 distances,
            # 11 .. 100), 1152 strings per long-copy cell (bins of 4 lengths, 5 .. 20), and all
            # of them behind a copy or MQAR run's one distance.
            "eval_batch_size": 256,
            "num_eval_batches": 18,
            "recurrent_steps": {"copy": 500, "agreement": 1000, "mqar": 400, "long_copy": 500},
            "parallel_steps": {"copy": 300, "agreement": 300, "mqar": 400, "long_copy": 500},
            "warmup_steps": 30,
            "checkpoint_every_steps": 250,
            "sizes": {
                "recurrent": {"embed_dim": 32, "hidden_size": 64},
                "attention": {"d_model": 64, "num_heads": 4, "mlp_dim": 128, "num_layers": 2},
                # Sized to this CPU: one layer, as the recurrent family. Measured step CPU time
                # at T = 105 (1 seed, x5 for 5 seeds): S6 at d_model 64, N = 16, expand 2, one
                # layer 0.75 s (two layers: no 6 steps in 4 CPU-minutes), at d_model 32, N = 8,
                # expand 1, one layer 0.16 s (LSTM: 0.035 s).
                # State per layer: LRU 2·8 floats, S6 E·N = 256 (+ conv inputs), minGRU and
                # minLSTM 64 (LSTM: 128).
                "linear_recurrence": {"embed_dim": 32, "hidden_size": 64, "d_model": 32,
                                      "state_size": 8, "expand": 1, "num_layers": 1},
                "other": {"embed_dim": 32, "hidden_size": 64, "d_model": 64, "num_heads": 4,
                          "mlp_dim": 128, "num_layers": 2},
            },
        },
        "long_range": {
            "copy_extra_variants": ("lstm_chrono",),
            "copy_delays": (10, 40, 90),  # distances T + 10
            "agreement_extra_variants": ("lstm_chrono",),  # chrono's T_max: the sequence
            "agreement_distances": (11, 100),
            "agreement_max_nouns": 3,
            "agreement_bin_width": 10,  # nine cells of ten distances: 11-20 .. 91-100
        },
        "extrapolation": {
            # Induction heads at L = 32 (distances 1 .. 30), evaluated up to 4·D = 120.
            # Measured: the Transformer (d_model 64, 3 seeds) reaches 0.91 .. 1.00 at step
            # 1000 at L = 32 (0.77 .. 1.00 at 800): 1500 steps leave a margin.
            "task": "induction",
            "train_distances": (1, 30),
            "task_fields": {},
            "reference": "recurrent",
            "recurrent_steps": 1000,
            "parallel_steps": 1500,
            "eval_distances": (15, 30, 60, 90, 120),
            "num_eval_batches": 2,  # of eval_batch_size: 512 examples per distance
        },
        "gradient_path": {"num_examples": 32},
        "attention_maps": {"num_examples": 32, "agreement_points": 3},
        "parallelism": {
            "lengths": (32, 128, 512, 2048),
            "widths": (32, 128, 512),
            "batch_size": 8,
            "repetitions": 5,
            "max_dataflow_length": 256,
        },
        "learning_rate": {
            # Every table model and long-range variant at each rate, on agreement at distances
            # 11 .. 20, at the agreement budget of this scale; the rate with the lowest mean
            # final loss over the pilot's seeds is used everywhere (seqresearch.study.tuning).
            "rates": (3e-4, 1e-3, 3e-3),
            "task": "agreement",  # the pilot task, trained at its budget of this scale
            "task_fields": {"min_distance": 11, "max_distance": 20, "max_nouns": 3,
                            "max_attractors": 3},
            "num_seeds": 3,  # seeds per pilot run
        },
        "capacity": {
            # Long-string copy (configs/long_copy.py; Jelassi et al. 2024): one run per model and
            # size, strings of every length L in `lengths` (uniform); accuracy by L in bins of
            # `bin_width` lengths.
            "long_copy": {"lengths": (5, 20), "bin_width": 4, "task": {"num_symbols": 8}},
            "models": "study",
            "pairs": (2, 4),
            "length": 16,
            "task": {"num_keys": 16, "num_values": 16},
            "sizes": {
                "recurrent": ({"hidden_size": 8}, {"hidden_size": 64}),
                "linear_recurrence": ({"hidden_size": 8, "state_size": 2},
                                      {"hidden_size": 64, "state_size": 16}),
                "convolution": ({"d_model": 16}, {"d_model": 64}),
                "attention": ({"d_model": 16, "num_heads": 2, "mlp_dim": 32},
                              {"d_model": 64, "num_heads": 4, "mlp_dim": 128}),
                "other": ({"hidden_size": 8, "d_model": 16, "state_size": 2},
                          {"hidden_size": 64, "d_model": 64, "state_size": 16}),
            },
        },
        "anchors": {
            # Selective copying at C = 64, M = 8, A = 8, 2 layers of width 64. ESTIMATE: S6 at
            # d 64, N 16 measured 0.83 s of CPU per step at 3 seeds, C = 32: about 2.8 s at 5
            # seeds and C = 64, so its 1500 steps take about an hour and a quarter of CPU.
            "selective": ("s6", "mingru", "minlstm"),
            "lti": ("lru", "conv"),
            "reference": ("transformer", "lstm"),
            "task": {"context_len": 64, "copy_length": 8, "num_symbols": 8},
            "steps": 1500,
            "num_eval_batches": 2,
            "sizes": {"s6": {"d_model": 64, "state_size": 16, "dt_rank": 4, "num_layers": 2},
                      "lru": {"d_model": 64, "state_size": 64, "num_layers": 2},
                      "mingru": {"embed_dim": 64, "hidden_size": 128, "num_layers": 2},
                      "minlstm": {"embed_dim": 64, "hidden_size": 128, "num_layers": 2},
                      "conv": {"d_model": 64, "kernel_size": 9, "num_layers": 2},
                      "transformer": {"d_model": 64, "num_heads": 4, "mlp_dim": 128,
                                      "num_layers": 2},
                      "lstm": {"embed_dim": 64, "hidden_size": 128, "num_layers": 2}},
        },
        "complexity": {
            "width": 64,
            "lengths": (16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
            "length": 256,
            "widths": (16, 32, 64, 128, 256, 512, 1024),
            "crossover_widths": (16, 32, 64, 128),
            "depth_lengths": (16, 32, 64, 128, 256),
            # Path length t-k -> t: n and width of the (element-wise interpreted) programs.
            "path_length_n": 32,
            "path_length_width": 8,
        },
    },
    "full": {
        "pipeline_check_only": False,
        "models": "all",
        "train": {
            "num_seeds": 3,
            "batch_size": 64,
            "eval_batch_size": 256,
            "num_eval_batches": 100,  # 25600 examples: 502 per agreement distance (10 .. 60)
            "recurrent_steps": {"copy": 5000, "agreement": 5000, "mqar": 5000, "long_copy": 5000},
            "parallel_steps": {"copy": 2000, "agreement": 2000, "mqar": 3000, "long_copy": 3000},
            "warmup_steps": 100,
            "checkpoint_every_steps": 1000,
            "sizes": {
                "recurrent": {"embed_dim": 64, "hidden_size": 128},
                "attention": {"d_model": 128, "num_heads": 4, "mlp_dim": 512, "num_layers": 2},
                "other": {"embed_dim": 64, "hidden_size": 128, "d_model": 128, "num_heads": 4,
                          "mlp_dim": 512, "num_layers": 2},
            },
        },
        "long_range": {
            "copy_extra_variants": ("lstm_fb0", "lstm_chrono"),
            "copy_delays": (10, 30, 100, 300, 1000),
            "agreement_extra_variants": (),
            "agreement_distances": (10, 60),
            "agreement_max_nouns": 3,
            "agreement_bin_width": 10,  # distances per reported cell (>= 500 examples each)
        },
        "extrapolation": {
            # Variable-delay copy needs the Transformer to locate the delimiter and count from
            # it (about 1500 steps at d_model 128): affordable here, not at the quick scale.
            "task": "copy",
            "train_distances": (11, 50),  # delays 1 .. 40 (distance = delay + L)
            "task_fields": {},
            "reference": "all",
            "recurrent_steps": 5000,
            "parallel_steps": 2000,
            "eval_distances": (20, 50, 75, 100, 150, 200),
            "num_eval_batches": 4,  # of eval_batch_size: 1024 examples per distance
        },
        "gradient_path": {"num_examples": 128},
        "attention_maps": {"num_examples": 64, "agreement_points": 11},
        "parallelism": {
            "lengths": (64, 256, 1024, 4096, 8192),
            "widths": (64, 256, 1024),
            "batch_size": 16,
            "repetitions": 5,
            "max_dataflow_length": 1024,
        },
        "learning_rate": {
            "rates": (3e-4, 1e-3, 3e-3),
            "task": "agreement",  # the pilot task, trained at its budget of this scale
            "task_fields": {"min_distance": 11, "max_distance": 60, "max_nouns": 3, "max_attractors": 3},  # its fields (the task config's defaults otherwise)
            "num_seeds": 3,  # seeds per pilot run
        },
        "capacity": {
            # Long-string copy (configs/long_copy.py; Jelassi et al. 2024): one run per model and
            # size, strings of every length L in `lengths` (uniform); accuracy by L in bins of
            # `bin_width` lengths.
            "long_copy": {"lengths": (9, 128), "bin_width": 8, "task": {}},
            "models": "study",
            "pairs": (4, 8, 16, 32),
            "length": 128,
            "task": {},
            "sizes": {
                "recurrent": ({"hidden_size": 32}, {"hidden_size": 128}, {"hidden_size": 512}),
                "linear_recurrence": ({"hidden_size": 32, "state_size": 4},
                                      {"hidden_size": 128, "state_size": 16},
                                      {"hidden_size": 512, "state_size": 64}),
                "convolution": ({"d_model": 32}, {"d_model": 128}, {"d_model": 512}),
                "attention": ({"d_model": 32, "num_heads": 2, "mlp_dim": 128},
                              {"d_model": 64, "num_heads": 4, "mlp_dim": 256},
                              {"d_model": 128, "num_heads": 4, "mlp_dim": 512}),
                "other": ({"hidden_size": 32, "d_model": 32, "state_size": 4},
                          {"hidden_size": 128, "d_model": 128, "state_size": 16},
                          {"hidden_size": 512, "d_model": 512, "state_size": 64}),
            },
        },
        "anchors": {
            # Selective copying at C = 256, M = 16, A = 16 (Mamba's vocabulary and 16 symbols),
            # 2 layers of width 64 as in Table 1; still 16 times shorter than its L = 4096.
            "selective": ("s6", "mingru", "minlstm"),
            "lti": ("lru", "conv"),
            "reference": ("transformer", "lstm"),
            "task": {"context_len": 256, "copy_length": 16, "num_symbols": 14},
            "steps": 20000,
            "num_eval_batches": 4,
            "sizes": {"s6": {"d_model": 64, "state_size": 16, "dt_rank": 4, "num_layers": 2},
                      "lru": {"d_model": 64, "state_size": 64, "num_layers": 2},
                      "mingru": {"embed_dim": 64, "hidden_size": 128, "num_layers": 2},
                      "minlstm": {"embed_dim": 64, "hidden_size": 128, "num_layers": 2},
                      "conv": {"d_model": 64, "kernel_size": 17, "num_layers": 2},
                      "transformer": {"d_model": 64, "num_heads": 4, "mlp_dim": 128,
                                      "num_layers": 2},
                      "lstm": {"embed_dim": 64, "hidden_size": 128, "num_layers": 2}},
        },
        "complexity": {
            "width": 128,
            "lengths": (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384),
            "length": 512,
            "widths": (16, 32, 64, 128, 256, 512, 1024, 2048),
            "crossover_widths": (16, 32, 64, 128, 256, 512),
            "depth_lengths": (16, 32, 64, 128, 256, 512, 1024),
            # Path length t-k -> t: n and width of the (element-wise interpreted) programs.
            "path_length_n": 64,
            "path_length_width": 8,
        },
    },
}

SWEEPS = ("learning_rate", "long_range_copy", "long_range_agreement", "extrapolation", "capacity",
          "capacity_copy", "anchors_selective_copy")
ANCHOR_ROLES = ("selective", "lti", "reference")  # the anchors block's tuples of table models


def get_study(scale: str) -> config_dict.ConfigDict:
  """Everything the experiments read at `scale` (training sizes, grids, analysis settings)."""
  if scale not in SCALES:
    raise ValueError(f"scale={scale!r}: must be one of {tuple(SCALES)}.")
  study = config_dict.ConfigDict(SCALES[scale])
  study.lock()
  return study


def study_models(scale: str) -> tuple[str, ...]:
  """The table models compared at `scale`."""
  return variants.table_models(SCALES[scale]["models"])


def _task(name: str) -> config_dict.ConfigDict:
  """The task group of configs/NAME.py at its defaults (copy_length, max_prefix, ...)."""
  return TASK_CONFIGS[name].get_config().task


def tunes(scale: str) -> bool:
  """Whether `scale` chooses each variant's learning rate by the learning_rate sweep."""
  return len(SCALES[scale]["learning_rate"]["rates"]) > 1


def _parse(arg: str | None) -> tuple[str, dict[str, str], str, str, str | None]:
  parsed = configlib.parse_arg(arg, sweep=str, scale=str, learning_rates=str)
  name = parsed.options["sweep"] or ""
  if name not in SWEEPS:
    raise ValueError(f"config argument sweep={name!r}: must be one of {SWEEPS}.")
  scale = parsed.options["scale"] or "quick"
  get_study(scale)  # Validates the scale.
  return parsed.model, parsed.overrides, name, scale, parsed.options["learning_rates"]


def _sweep_task(sweep: str, scale: str) -> str:
  """The task a sweep trains on."""
  if sweep == "extrapolation":
    return SCALES[scale]["extrapolation"]["task"]
  if sweep == "capacity":
    return "mqar"
  if sweep == "capacity_copy":
    return "long_copy"
  if sweep == "anchors_selective_copy":
    return "selective_copy"
  if sweep == tuning.SWEEP:
    return SCALES[scale]["learning_rate"]["task"]
  return "copy" if sweep == "long_range_copy" else "agreement"


def _extrapolation_task(scale: str) -> tuple[str, dict[str, Any]]:
  """(task, its dotted task fields) of the extrapolation runs: trained on train_distances.

  Raises:
    ValueError: a task not in POSITION_TASKS, induction distances not starting at 1, or copy
      distances that leave no delay.
  """
  ex = SCALES[scale]["extrapolation"]
  name, (low, high) = ex["task"], ex["train_distances"]
  fields = {f"task.{k}": v for k, v in ex["task_fields"].items()}
  if name == "copy":  # distance = delay + L
    length = fields.get("task.copy_length", _task("copy").copy_length)
    if low <= length:  # a delay of at least 1
      raise ValueError(f"extrapolation.train_distances=({low}, {high}) at scale {scale!r}: "
                       f"copy distances are delay + copy_length, so the first must be > "
                       f"{length}.")
    fields.update({"task.min_delay": low - length, "task.max_delay": high - length})
  elif name == "induction":  # the trigger position is random: every distance 1 .. L - 2
    if low != 1:
      raise ValueError(f"extrapolation.train_distances=({low}, {high}) at scale {scale!r}: "
                       "induction trains every distance 1 .. L - 2, so the first must be 1.")
    fields["task.length"] = high + 2
  else:
    raise ValueError(f"extrapolation.task={name!r} at scale {scale!r}: must be one of "
                     f"{POSITION_TASKS} (a task that needs positions).")
  return name, fields


def extrapolation_task_settings(scale: str) -> Any:
  """The task settings (seqresearch.tasks) the extrapolation runs train on at `scale`."""
  name, fields = _extrapolation_task(scale)
  group = _task(name)
  values = {k: v for k, v in group.items() if k != "name"}
  values.update({k.split(".", 1)[1]: v for k, v in fields.items()})
  return tasks.SETTINGS[name](**values)


def extrapolation_variants(scale: str) -> tuple[str, ...]:
  """The extrapolation sweep's variants: the reference models and every positional encoding.

  Every variant of `study.variants.EXTRA` that sets model.pos_encoding (of a model the scale
  compares) and the model it varies (its own default encoding), so a new encoding joins
  with nothing edited here; before them the scale's `reference` models ('recurrent': those on
  the essay's recurrent side, 'all', or 'none').
  """
  table = study_models(scale)
  reference = SCALES[scale]["extrapolation"]["reference"]
  if reference not in ("recurrent", "all", "none"):
    raise ValueError(f"extrapolation.reference={reference!r} at scale {scale!r}: must be "
                     "'recurrent', 'all' or 'none'.")
  chosen = {"all": list(table), "none": [],
            "recurrent": [n for n in table if variants.variant(n).is_recurrent]}[reference]
  for extra in variants.EXTRA.values():
    if "model.pos_encoding" in extra.fields and extra.model in table:
      chosen += [extra.model, extra.name]
  return tuple(variants.ordered(chosen))


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  # learning_rates (the chosen-rates file) is read by get_sweep only: a member's rate reaches
  # its config as the member's optimizer.learning_rate override.
  model, overrides, name, scale, _ = _parse(arg)
  train = SCALES[scale]["train"]
  task = _sweep_task(name, scale)
  config = TASK_CONFIGS[task].get_config(model)
  entry = models.entry(model)
  # Budgets by family: the recurrences (linear or not) get the recurrent budget; attention
  # and the causal CNN (parallel over time) the parallel one.
  recurrent = entry.family in ("recurrent", "linear_recurrence")
  config.num_seeds = train["num_seeds"]
  config.batch_size = train["batch_size"]
  config.eval_batch_size = train["eval_batch_size"]
  batches = train["num_eval_batches"]
  if isinstance(batches, dict):
    if task not in batches and name != "anchors_selective_copy":  # (anchors: its own)
      raise ValueError(f"train.num_eval_batches at scale {scale!r} has no entry for task "
                       f"{task!r} (sweep {name}); it holds {sorted(batches)}.")
    batches = batches.get(task, 1)
  config.num_eval_batches = batches
  budget = "recurrent_steps" if recurrent else "parallel_steps"
  if name == "extrapolation":  # its own task and budget (a task that needs positions)
    config.num_train_steps = SCALES[scale]["extrapolation"][budget]
  elif name == "anchors_selective_copy":  # one budget for all: Table 1 compares at equal budget
    config.num_train_steps = SCALES[scale]["anchors"]["steps"]
    config.num_eval_batches = SCALES[scale]["anchors"]["num_eval_batches"]
  else:
    config.num_train_steps = train[budget][task]
  # Evaluate at the end only: the analyses read the final model. Checkpoint there too, and
  # every train.checkpoint_every_steps (if > 0) so that a killed run resumes near its step.
  config.eval_every_steps = config.num_train_steps
  every = train["checkpoint_every_steps"] or config.num_train_steps
  config.checkpoint_every_steps = min(every, config.num_train_steps)
  config.log_every_steps = max(1, min(50, config.num_train_steps // 4))
  if entry.warmup_steps:
    config.optimizer.warmup_steps = train["warmup_steps"]
  sizes = train["sizes"].get(entry.family, train["sizes"].get("other", entry.tiny))
  for field, value in sizes.items():
    if field in config.model:
      config.model[field] = value
  configlib.apply_overrides(config, overrides)
  return config


def _members(names, length: int, task: dict, max_len: bool = False) -> list[dict]:
  """Sweep members: each variant's overrides plus the task's, chrono's T_max and max_len."""
  out = []
  for name in variants.ordered(names):
    v = variants.variant(name)
    member = v.sweep_entry()  # (the order of the keys names the run directory)
    if v.fields.get("model.lstm_init") == "chrono":
      member["model.chrono_max_len"] = length  # T_max: the longest dependency (Tallec 2018)
    if max_len and "max_len" in models.model_config(v.model):
      member["model.max_len"] = length  # positions must cover the longest evaluation sequence
    out.append({**member, **task})
  return out


def get_sweep(arg: str | None = None) -> list[dict]:
  """The runs of one sweep at one scale: {'model': ..., dotted field: value} per run.

  At a scale that tunes (`tunes`), every sweep but learning_rate trains each variant at the
  rate chosen for it: the argument must name the chosen-rates file (learning_rates=PATH,
  written by the study after the learning_rate sweep; see seqresearch.study.tuning). A
  variant the file does not list takes its table model's chosen rate.

  Raises:
    ValueError: an unknown sweep or scale; at a scale that tunes, no learning_rates file, or
      one without a rate for a member's variant or model; learning_rates at one that does not.
  """
  _, _, name, scale, rates_file = _parse(arg)
  members = _sweep_members(name, scale)
  if name == tuning.SWEEP:
    return members
  if not tunes(scale):
    if rates_file is not None:
      raise ValueError(f"learning_rates={rates_file}: scale={scale} trains at the table's "
                       f"rates (its learning_rate.rates has fewer than two values).")
    return members
  if rates_file is None:
    raise ValueError(f"sweep={name},scale={scale}: this scale trains each variant at the rate "
                     f"its {tuning.SWEEP} sweep chose; add learning_rates=PATH to the argument "
                     f"(the study writes <workdir>/{tuning.FILE}; scripts/report.py does both).")
  rates = tuning.read_rates(rates_file)
  out = []
  for member in members:
    variant = runner.variant_of(member["model"], member)
    rate = rates.get(variant, rates.get(member["model"]))
    if rate is None:
      raise ValueError(f"learning_rates={rates_file}: no rate for {variant!r} nor its model "
                       f"{member['model']!r}; it holds {sorted(rates)}.")
    out.append({**member, "optimizer.learning_rate": rate})
  return out


def _learning_rate_members(scale: str) -> list[dict]:
  """The pilot: every table model and long-range variant at every rate, on one task."""
  pilot, lr = SCALES[scale]["learning_rate"], SCALES[scale]["long_range"]
  if len(pilot["rates"]) < 2:
    return []
  config = TASK_CONFIGS[pilot["task"]].get_config()
  for field, value in pilot["task_fields"].items():
    config.task[field] = value
  length = build.task_settings(config.task).seq_len  # chrono's T_max: the whole sequence
  chosen = (*study_models(scale), *lr["copy_extra_variants"], *lr["agreement_extra_variants"])
  task = {f"task.{k}": v for k, v in pilot["task_fields"].items()}
  return [{**member, "num_seeds": pilot["num_seeds"], "optimizer.learning_rate": rate}
          for member in _members(chosen, length, task) for rate in pilot["rates"]]


def _sweep_members(name: str, scale: str) -> list[dict]:
  """The members of sweep `name` at `scale`, before the chosen learning rates are applied."""
  s = SCALES[scale]
  lr = s["long_range"]
  table = study_models(scale)
  if name == tuning.SWEEP:
    return _learning_rate_members(scale)
  if name == "capacity":
    return _capacity_members(capacity_models(scale), scale)
  if name == "capacity_copy":
    return _long_copy_members(capacity_models(scale), scale)
  if name == "anchors_selective_copy":
    return _anchor_members(scale)
  copy_length = _task("copy").copy_length
  prefix = _task("agreement").max_prefix
  if name == "long_range_copy":
    return [m for d in lr["copy_delays"] for m in _members(
        (*table, *lr["copy_extra_variants"]), d + 2 * copy_length,
        {"task.min_delay": d, "task.max_delay": d})]
  if name == "long_range_agreement":
    low, high = lr["agreement_distances"]
    nouns = lr["agreement_max_nouns"]
    return _members((*table, *lr["agreement_extra_variants"]), high + prefix + 1,
                    {"task.min_distance": low, "task.max_distance": high,
                     "task.max_nouns": nouns, "task.max_attractors": nouns})
  # extrapolation: trained here, every dependency up to D; max_len covers 4·D and beyond.
  _, task = _extrapolation_task(scale)
  longest = extrapolation_task_settings(scale).at_distance(
      max(s["extrapolation"]["eval_distances"])).seq_len
  return _members(extrapolation_variants(scale), longest, task, max_len=True)


def capacity_models(scale: str) -> tuple[str, ...]:
  """The models of the capacity sweeps at `scale`: its study models, or the named subset.

  Raises:
    ValueError: capacity.models neither 'study' nor a tuple of the scale's study models.
  """
  chosen, table = SCALES[scale]["capacity"]["models"], study_models(scale)
  if chosen == "study":
    return table
  if isinstance(chosen, str) or not chosen or not set(chosen) <= set(table):
    raise ValueError(f"capacity.models={chosen!r} at scale {scale!r}: must be 'study' or a "
                     f"tuple of the scale's models {table}.")
  return tuple(n for n in table if n in chosen)


def capacity_sizes(model: str, scale: str) -> list[dict]:
  """The model fields of each capacity size of `model` at `scale` (smallest state first).

  The family's sizes (or "other"'s), restricted to the fields the model declares.
  """
  sizes = SCALES[scale]["capacity"]["sizes"]
  fields = models.model_config(model)
  chosen = sizes.get(models.entry(model).family, sizes["other"])
  return [{k: v for k, v in size.items() if k in fields} for size in chosen]


def _capacity_members(table, scale: str) -> list[dict]:
  """One MQAR run per table model, size and number of pairs K, all at one sequence length."""
  capacity = SCALES[scale]["capacity"]
  return [{"model": model, **{f"model.{k}": v for k, v in size.items()},
           "task.num_pairs": pairs, "task.length": capacity["length"],
           **{f"task.{k}": v for k, v in capacity["task"].items()}}
          for model in table for size in capacity_sizes(model, scale)
          for pairs in capacity["pairs"]]


def _long_copy_members(table, scale: str) -> list[dict]:
  """One long-string copy run per table model and capacity size, strings of every length."""
  capacity = SCALES[scale]["capacity"]
  low, high = capacity["long_copy"]["lengths"]
  return [{"model": model, **{f"model.{k}": v for k, v in size.items()},
           "task.min_length": low, "task.max_length": high,
           **{f"task.{k}": v for k, v in capacity["long_copy"]["task"].items()}}
          for model in table for size in capacity_sizes(model, scale)]


def anchor_models(scale: str) -> dict[str, tuple[str, ...]]:
  """{role: table models} of the anchors block at `scale` (roles: ANCHOR_ROLES).

  Raises:
    ValueError: a name that is not a model of the table, or one named in two roles.
  """
  anchors = SCALES[scale]["anchors"]
  chosen = {role: tuple(anchors[role]) for role in ANCHOR_ROLES}
  seen: set[str] = set()
  for role, names in chosen.items():
    for name in names:
      if name not in models.names():
        raise ValueError(f"anchors.{role}: {name!r} at scale {scale!r} is not a model of the "
                         f"table; allowed: {models.names()}.")
      if name in seen:
        raise ValueError(f"anchors.{role}: {name!r} at scale {scale!r} is named in two roles.")
      seen.add(name)
  return chosen


def _anchor_members(scale: str) -> list[dict]:
  """One selective-copy run per anchor model, at its anchor size, on the anchor's task."""
  anchors = SCALES[scale]["anchors"]
  task = {f"task.{k}": v for k, v in anchors["task"].items()}
  return [{"model": name, **{f"model.{k}": v for k, v in anchors["sizes"].get(name, {}).items()},
           **task} for names in anchor_models(scale).values() for name in names]
