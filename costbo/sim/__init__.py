"""A simulated llm.c world for benchmarks and tests: landscapes of final val loss over (max LR,
steps, model shape), a simulated A10G's costs, and ``costbo-sim``, a stand-in for train_gpt2cu.

>>> from costbo.sim import sample_landscape
>>> ls = sample_landscape("calibrated", seed=3)
>>> 6e-4 <= ls.best_lr(4725, ls.target.model) <= 3e-3
True
"""

from costbo.sim.gpu import SimulatedA10G
from costbo.sim.landscape import FAMILIES, INIT_LOSS, Landscape, LandscapeParams, sample_landscape

__all__ = [
    "FAMILIES",
    "INIT_LOSS",
    "Landscape",
    "LandscapeParams",
    "SimulatedA10G",
    "sample_landscape",
]
