"""costbo: choose the max learning rate of a full-scale llm.c GPT-2 run on a dollar budget.

Cost-aware multi-fidelity Bayesian optimization over (log LR, steps, width), driven through an
Optuna-style ask/tell ``Study``.
"""

from costbo.gpt2 import ModelShape
from costbo.space import Fidelity, SearchSpace
from costbo.trial import BudgetExhausted, Recommendation, Trial, TrialStatus

__all__ = [
    "BudgetExhausted",
    "Fidelity",
    "ModelShape",
    "Recommendation",
    "SearchSpace",
    "Study",
    "Trial",
    "TrialStatus",
]

__version__ = "0.1.0"


def __getattr__(name: str):
    # Study pulls in torch/botorch; import it lazily so that `costbo-twin --help` and the log
    # parser start fast.
    if name == "Study":
        from costbo.study import Study

        return Study
    raise AttributeError(name)
