"""The common protocol of every tuning strategy: an oracle that runs simulated llm.c trainings.

A strategy is a function ``strategy(oracle, seed) -> lr``: it may call ``oracle.run(lr, steps,
model)`` as often as the budget allows and answers with the max LR it would use for the
full-scale run (4725 steps, GPT-2 124M). The oracle wraps one ``costbo.sim`` landscape:

- a run's val loss is the landscape's (NaN when the run diverges);
- its cost is the simulated A10G seconds of the whole run (start-up, step 0, val at step 0 and at
  the end, no HellaSwag) x $1.50/hour; a diverged run is charged up to the step where costbo's
  runner would have killed it (``DivergenceMonitor`` applied to the simulated train curve);
- a run whose full cost would exceed the remaining budget is refused before it starts
  (``OverBudget``), so no strategy can ever spend past its budget.

Strategies may ``quote`` the exact cost of a run before deciding (as if they had timed 20 steps
with the course's cost method): a generous assumption for the baselines, which costbo (learning
its cost model from the runs) does not get. After each run a strategy may record its current
answer with ``oracle.answer(...)``; the benchmark turns these into regret-versus-dollars curves.
Time spent between runs (the strategy's deciding) is recorded per run; time inside ``answer``
is not, so that computing a trajectory does not count as deciding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from costbo.gpt2 import ModelShape
from costbo.llmc.runner import DivergenceMonitor, DivergenceRule
from costbo.sim import Landscape

PRICE_PER_HOUR = 1.5  # dollars per hour of an A10G (g5.xlarge), the homework's rounded price
STEP_RUNGS = (50, 100, 200, 500, 1000, 2000, 4725)  # the search space of design.md
WIDTH_RUNGS = (64, 128, 192, 256, 384, 512, 768)  # depth = heads = width // 64
LR_BOUNDS = (1e-5, 1e-1)  # costbo's default search space (design.md)
STUDENT_LR_RANGE = (1e-4, 1e-2)  # where a student would search by hand: 6e-4 / 6 .. 6e-4 x 16
TARGET_STEPS = 4725
TARGET_MODEL = ModelShape(12, 768, 12)
DEFAULT_LR = 6e-4  # the GPT-3 table's value for 125M, llm.c's default


class OverBudget(RuntimeError):
    """The run asked for would cost more than what remains of the budget; it was not started."""


@dataclass(frozen=True)
class RunResult:
    """One simulated run: ``val_loss`` in nats (NaN if diverged), ``seconds`` of simulated A10G
    time charged, ``dollars`` at the oracle's price and ``spent`` (dollars) after it.
    ``stop_at`` is llm.c's ``-es`` (the run follows a ``steps``-long schedule but stops there)."""

    lr: float
    steps: int
    model: ModelShape
    val_loss: float
    diverged: bool
    seconds: float
    dollars: float
    spent: float
    stop_at: int | None = None


class Oracle:
    """Runs (lr, steps, model) on a landscape, charges simulated seconds x price, refuses runs
    past the budget (dollars), and records the runs, the answers and the deciding time."""

    def __init__(
        self, landscape: Landscape, budget: float, price_per_hour: float = PRICE_PER_HOUR
    ) -> None:
        if not budget > 0:
            raise ValueError(f"budget {budget!r} must be a positive number of dollars")
        self.landscape = landscape
        self.budget = float(budget)
        self.price_per_hour = float(price_per_hour)
        self.spent = 0.0
        self.runs: list[RunResult] = []
        self.answers: list[tuple[float, float]] = []  # (dollars spent, recommended LR)
        self.decision_seconds: list[float] = []  # wall seconds of deciding before each run
        self.refused = 0  # runs asked for that would have passed the budget
        self._clock = time.perf_counter()

    # --- money -----------------------------------------------------------------------------
    @property
    def remaining(self) -> float:
        """Dollars left of the budget."""
        return self.budget - self.spent

    def dollars(self, seconds: float) -> float:
        return seconds / 3600.0 * self.price_per_hour

    def quote(self, steps: int, model: ModelShape, stop_at: int | None = None) -> float:
        """Dollars of a run that completes (diverged runs cost at most this)."""
        return self.dollars(self.landscape.run_seconds(steps, model, stop_at=stop_at))

    def affordable(self, steps: int, model: ModelShape, stop_at: int | None = None) -> bool:
        return self.quote(steps, model, stop_at) <= self.remaining + 1e-12

    # --- runs ------------------------------------------------------------------------------
    def run(
        self, lr: float, steps: int, model: ModelShape, stop_at: int | None = None
    ) -> RunResult:
        """Train at max LR ``lr`` for ``steps`` steps (stopping at ``stop_at`` if given) and
        charge it; raises ``OverBudget`` (charging nothing) if it might not fit the budget."""
        now = time.perf_counter()
        self.decision_seconds.append(now - self._clock)
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr {lr!r} must be a positive number")
        quote = self.quote(steps, model, stop_at)
        if quote > self.remaining + 1e-12:
            self.decision_seconds.pop()
            self.refused += 1
            self._clock = time.perf_counter()
            raise OverBudget(
                f"a run of {steps} steps on {model} costs ${quote:.3f} but only "
                f"${max(self.remaining, 0.0):.3f} of ${self.budget:.2f} remains"
            )
        ls = self.landscape
        seconds = ls.run_seconds(steps, model, stop_at=stop_at)
        diverged = ls.diverges(lr, steps, model)
        loss = math.nan
        if diverged:
            kill = self._kill_step(lr, steps, model, stop_at)
            if kill is not None:
                seconds = ls.run_seconds(steps, model, stop_at=kill)
            elif stop_at is not None:
                # stopped early before the blow-up showed: the user sees what llm.c printed
                loss = ls.val_loss_at(lr, steps, model, stop_at)
                diverged = not math.isfinite(loss)
        elif stop_at is None:
            loss = ls.val_loss(lr, steps, model)
        else:
            loss = ls.val_loss_at(lr, steps, model, stop_at)
        dollars = self.dollars(seconds)
        self.spent += dollars
        result = RunResult(lr, steps, model, loss, diverged, seconds, dollars, self.spent, stop_at)
        self.runs.append(result)
        self._clock = time.perf_counter()
        return result

    def _kill_step(
        self, lr: float, steps: int, model: ModelShape, stop_at: int | None
    ) -> int | None:
        """The step at which costbo's runner kills this diverging run, or None if its
        divergence monitor never fires before the run ends (e.g. a run on a high plateau)."""
        last = steps if stop_at is None else stop_at
        train, val = self.landscape.loss_curve(lr, steps, model, stop_at=last)
        monitor = DivergenceMonitor(DivergenceRule(), int(0.1 * steps))
        for i, loss in enumerate(train):
            if monitor.observe(i + 1, loss) is not None:
                return i + 1
        return None if math.isfinite(val.get(last, math.nan)) else last

    # --- answers ---------------------------------------------------------------------------
    def answer(self, lr: float | Callable[[], float]) -> float:
        """Record the strategy's current answer after its latest run; ``lr`` may be a function
        computing it (its time is not counted as deciding). Returns the LR."""
        started = time.perf_counter()
        value = float(lr() if callable(lr) else lr)
        self.answers.append((self.spent, value))
        self._clock += time.perf_counter() - started  # deciding time before this still counts
        return value


__all__ = [
    "DEFAULT_LR",
    "LR_BOUNDS",
    "Oracle",
    "OverBudget",
    "PRICE_PER_HOUR",
    "RunResult",
    "STEP_RUNGS",
    "STUDENT_LR_RANGE",
    "TARGET_MODEL",
    "TARGET_STEPS",
    "WIDTH_RUNGS",
]
