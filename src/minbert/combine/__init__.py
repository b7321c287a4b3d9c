"""How the tasks' gradients of a step become one. Chosen by `train.combine.name`; one file per family, each
method's paper and formula in its docstring:

- base.py: the `Combiner` every method builds on, and `sum`;
- basic.py: `weighted` (fixed loss weights);
- pcgrad.py: minbert's `pcgrad` (Yu et al. 2020), from the tasks' Gram matrix;
- aggregators.py: Gram-matrix aggregators through torchjd (`upgrad`, `mgda`, `cagrad`, `nash-mtl`, `imtl-g`,
  `aligned-mtl`, `dualproj`, `torchjd-pcgrad`, `fairgrad`, `random`, `graddrop`);
- loss_weighting.py: loss weightings that need no per-task gradients (`uw`, `dwa`, `rlw`, `famo`) and
  `gradnorm` (which reads the Gram matrix's diagonal).
"""
from __future__ import annotations

from . import basic, pcgrad, aggregators, loss_weighting  # noqa: F401,I001  (each registers its methods, in this order)
from .base import COMBINERS, CombineSettings, Combiner, RowsLookedUp, build_combiner, cosines, draw_seed, seeded
from .basic import Weighted, WeightedSettings
from .pcgrad import PCGrad, pcgrad_weights

__all__ = ["COMBINERS", "CombineSettings", "Combiner", "PCGrad", "RowsLookedUp", "Weighted", "WeightedSettings",
           "build_combiner", "cosines", "draw_seed", "pcgrad_weights", "seeded"]
