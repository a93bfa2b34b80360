"""Every default that more than one layer shows, declared once: the Python API's signatures, the
command line's options and the evaluation read them from here, so that they cannot drift
apart. Two settings, each for its own question (method guide, "The defaults"):

- a **model** of your data (:class:`cellflow.CellFlow`, ``cellflow fit``): every column of the
  representation, as it is, and the weight average;
- the **benchmark** (:func:`cellflow.evaluate_holdout`, ``cellflow evaluate``): the paper's
  protocol, 5 standardised PCs and the last weights, so that W1 compares with published numbers.
"""

from __future__ import annotations

#: where a CellFlow reads its cells (scanpy's PCA)
USE_REP = "X_pca"
#: widths of the velocity network's hidden layers (the paper's 3 x 64 SELU MLP)
HIDDEN = (64, 64, 64)
#: optimiser steps of a CellFlow and of each benchmark model (the paper's)
STEPS = 2000
#: cells drawn per time point per step, unless a trained time point has fewer
BATCH_SIZE = 512
#: where OT-CFM/SB-CFM/OT-MFM training pairs come from (CellFlow.train(ot_plan=...)): one plan
#: between whole time points where every interval's plan has at most WHOLE_PLAN_ENTRIES entries
#: (4,096 x 4,096: a float64 solve then holds a few such matrices, about 0.5 GB, and each interval
#: keeps 8 bytes per positive entry, 134 MB at most; method guide, "Whole plans"), else one per
#: minibatch
OT_PLAN, WHOLE_PLAN_ENTRIES = "auto", 4096 * 4096
#: the benchmark's pairs: a plan per minibatch, the paper's protocol
BENCHMARK_OT_PLAN = "minibatch"
#: how measured times become model time: one unit per interval, the paper's protocol
TIME_SCALE = "index"
#: a model standardises its features only when asked
MODEL_WHITEN = False
#: the fewest cells a time point may have
MIN_CELLS = 10
#: an obsm representation up to this size (in float32) is copied into the model, standardised,
#: for the fastest draws; a larger one is drawn from the AnnData's own array a minibatch at a
#: time, so that an atlas is held in memory once (method guide, "Memory on large courses")
STORE_COPY_BYTES = 2**30
#: a model averages its weights, so that pushes over several intervals stay on the measured cells
MODEL_EMA_DECAY = 0.999
#: the benchmark: the paper's 5 leading PCs (or every column of a narrower layout), standardised
BENCHMARK_N_PCS, BENCHMARK_WHITEN = 5, True
#: the benchmark's flows, seeds, and cells per side of the exact W1/W2
BENCHMARK_METHODS, BENCHMARK_SEEDS, MAX_EVAL = ("ot", "sb", "icfm"), (0, 1, 2, 3, 4), 4000
#: a growth-aware CellFlow: how far the source marginal of each interval's plan may move from the
#: prior (τ of the unbalanced coupling; the target is held), and that plan's entropic ε, a fraction
#: of the interval's mean squared distance (Waddington-OT's ε on a median-scaled cost)
GROWTH_TAU, GROWTH_OT_EPS = 0.95, 0.05
#: terminal states (cellflow.tl.terminal_states; method guide, "Terminal states"): a macrostate is
#: terminal when this share of the mass sitting in it one interval earlier stays in it; at most
#: this many k-means macrostates are tried at each end
TERMINAL_STABILITY, MAX_STATES = 0.8, 8
#: fates (cellflow.tl.fates and pull): a pushed cell lands on the cells of the next time with the
#: entropic kernel exp(-d²/ε), ε this fraction of their mean squared distance (as moscot scales its
#: ε by the mean cost; method guide, "How wide a landing"), on at most FATE_LANDMARKS of them
FATE_EPS, FATE_LANDMARKS = 0.1, 8192
#: OT-MFM's data metric: ε of G = I/(h + ε), larger than the paper's 1e-2, which predicted
#: held-out cells worse (method guide, "OT-MFM"); LAND's kernel width, "auto": the median
#: distance between neighbouring cells, measured on the data
METRIC_EPS, LAND_GAMMA = 0.1, "auto"
#: ``cellflow bench scale``: cells of the sparse count matrix X trained on before the
#: representation (0 skips that part), for ``run()`` and ``--x-cells`` alike
SCALE_X_CELLS = 200_000
