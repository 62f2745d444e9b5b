"""The ask/tell Study: proposes llm.c runs under a hard dollar budget and recommends the LR.

The caller owns the loop, as in Optuna:

    study = Study(space, budget=20.0, price_per_hour=1.5, journal="runs/study.jsonl")
    while True:
        try:
            trial = study.ask()
        except BudgetExhausted:
            break
        ...run it...
        study.tell(trial.id, val_loss=..., seconds=...)
    print(study.recommend())

Every ask and tell is journaled before it returns, so ``Study.load(path)`` rebuilds the same
trials, the same spend and the same next proposal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import numbers
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from costbo.acquisition import ACQUISITIONS, Candidates, TargetSlice, fidelity_values
from costbo.cost_model import CostModel, CostPrediction
from costbo.divergence import DivergenceModel
from costbo.gpt2 import MAX_SEQ_LEN, TOKENS_PER_STEP, VOCAB_SIZE, ModelShape
from costbo.journal import FORMAT_VERSION, Journal, JournalError, read_events
from costbo.priors import LearningRatePrior
from costbo.recommendation import recommend
from costbo.space import Fidelity, SearchSpace, as_model
from costbo.surrogate import LossPosterior, LossSurrogate, expected_far_noise, to_inputs
from costbo.trial import BudgetExhausted, Recommendation, Trial, TrialStatus

REPLAYED_EVENTS = ("create", "ask", "tell", "cost_seed", "budget")  # what _replay acts on
INITIAL_OFFSETS = (-0.5, 0.0, 0.5)  # decades around the prior optimum of the cheapest rung
CANDIDATE_WINDOW = (-0.5, 0.4)  # decades around each rung's current best LR worth probing
RECOMMENDATION_GRID = 161
TARGET_WINDOW = 1.0  # decades either side of the prior's full-scale optimum
RECOMMENDATION_REACH = 0.5  # decades: the answer stays within max(this, 3 sd) of where the
# drift model puts the full-scale optimum (beyond, the target's mean is extrapolation)


@contextlib.contextmanager
def _single_threaded():
    """Run the model arithmetic on one thread: its matrices are tens to hundreds wide, where
    torch's and the BLAS's thread pools cost far more than they save (8x slower on a busy
    2-core machine; scipy's L-BFGS-B alone spent most of a study spinning BLAS threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def _is_number(value: object) -> bool:
    # numpy scalars count (np.float32 is not a float, np.int64 not an int): values computed
    # with numpy or read from a DataFrame are numbers to a user
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _whole(name: str, value: object, minimum: int, fix: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} {value!r} must be an integer >= {minimum}: {fix}")
    return int(value)


def _positive(name: str, value: object, fix: str) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} {value!r} is not a number: {fix}")
    if value <= 0:
        raise ValueError(f"{name} {value!r} must be positive: {fix}")
    return float(value)


class Study:
    """Cost-aware multi-fidelity BO of the max LR, with an ask/tell interface.

    Args:
        space: the LR bounds and fidelities (``SearchSpace``).
        budget: dollars the tuning runs may cost in total.
        price_per_hour: dollars per hour of the machine.
        journal: path of the append-only JSONL journal (None: in memory only).
        seed: makes the initial design and the recommendation's sampling reproducible.
        acquisition: ``"regret_per_dollar"`` (default: the fidelity whose runs most reduce
            the expected full-scale regret per dollar, the LR there by knowledge gradient; it
            won the benchmark), ``"kg_per_dollar"`` (knowledge gradient over every fidelity
            and LR) or ``"ei_per_dollar"``; see ``costbo.acquisition``.
        reserve: dollars kept out of the tuning budget.
        cost_quantile: the budget guard reserves this quantile of each run's predicted cost.
        prior: a ``LearningRatePrior``; default: published scaling laws at the target.
        tokens_per_step, seq_len: llm.c's ``-d`` and ``-t`` (for the FLOPs cost prior and laws).
        cost_model: a configured ``CostModel`` (default: an A10G-like FLOPs prior).
        n_initial: cheap runs spread over log LR before the acquisition takes over.
        lr_grid_size: points of the log10-LR candidate grid over the bounds.
        load_if_exists: resume from ``journal`` if it exists and its config matches.
    """

    def __init__(
        self,
        space: SearchSpace,
        budget: float,
        price_per_hour: float = 1.5,
        journal: str | Path | None = None,
        seed: int = 0,
        *,
        acquisition: str = "regret_per_dollar",
        reserve: float = 0.0,
        cost_quantile: float = 0.9,
        prior: LearningRatePrior | None = None,
        tokens_per_step: int = TOKENS_PER_STEP,
        seq_len: int = MAX_SEQ_LEN,
        cost_model: CostModel | None = None,
        n_initial: int = 3,
        lr_grid_size: int = 49,
        load_if_exists: bool = False,
        _replaying: bool = False,
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace, not {type(space).__name__}")
        self.space = space
        self.budget = _positive("budget", budget, "give the tuning budget in dollars, e.g. 20.0")
        self.price_per_hour = _positive(
            "price_per_hour", price_per_hour, "give the machine's dollars per hour, e.g. 1.5"
        )
        if not isinstance(acquisition, str) or acquisition not in ACQUISITIONS:
            raise ValueError(
                f"acquisition {acquisition!r} is unknown: choose one of {sorted(ACQUISITIONS)}"
            )
        if not _is_number(reserve) or not math.isfinite(reserve) or reserve < 0:
            raise ValueError(f"reserve {reserve!r} must be a number of dollars >= 0")
        if reserve >= budget:
            raise ValueError(f"reserve {reserve!r} leaves nothing of the budget {budget!r}")
        if not (_is_number(cost_quantile) and 0.5 <= cost_quantile < 1.0):
            raise ValueError(f"cost_quantile {cost_quantile!r} must be in [0.5, 1), e.g. 0.9")
        # numpy's generators take only seeds >= 0, and would say so only at the first ask
        seed = _whole("seed", seed, 0, "e.g. seed=0")
        n_initial = _whole("n_initial", n_initial, 0, "e.g. n_initial=3")
        lr_grid_size = _whole("lr_grid_size", lr_grid_size, 5, "e.g. lr_grid_size=49")
        self.acquisition = acquisition
        self.reserve = float(reserve)
        self.cost_quantile = float(cost_quantile)
        self.seed = seed
        self.tokens_per_step = _whole(
            "tokens_per_step", tokens_per_step, 1, "llm.c's -d, e.g. 524288"
        )
        self.seq_len = _whole("seq_len", seq_len, 1, "llm.c's -t, e.g. 1024")
        self.n_initial = n_initial
        self.lr_grid_size = lr_grid_size
        if prior is not None and not isinstance(prior, LearningRatePrior):
            raise TypeError(
                f"prior must be a LearningRatePrior (e.g. LearningRatePrior.from_lr(1.5e-3)), "
                f"not {type(prior).__name__}"
            )
        if cost_model is not None and not isinstance(cost_model, CostModel):
            raise TypeError(f"cost_model must be a CostModel, not {type(cost_model).__name__}")
        self.prior = prior or LearningRatePrior.from_scaling_laws(
            space.target.model, space.target.steps, self.tokens_per_step, self.seq_len
        )
        if cost_model is None:
            cost_model = CostModel(
                self.price_per_hour,
                tokens_per_step=self.tokens_per_step,
                seq_len=self.seq_len,
                reference_model=space.target.model,
            )
        elif cost_model.price_per_hour != self.price_per_hour:
            raise ValueError(
                f"cost_model.price_per_hour {cost_model.price_per_hour} differs from "
                f"price_per_hour {self.price_per_hour}: give the same price to both"
            )
        self.cost_model = cost_model
        self._surrogate = LossSurrogate(self.prior)
        self._divergence = DivergenceModel(self.prior)
        self._trials: list[Trial] = []
        self._cost_seeds: list[dict] = []
        self._state_key: tuple | None = None
        self._state: dict = {}
        self.lr_grid = np.linspace(*space.log10_lr_bounds, lr_grid_size)
        self._journal: Journal | None = None
        self.journal_path = Path(journal) if journal is not None else None
        if self.journal_path is not None and not _replaying:
            self._open_journal(load_if_exists)

    # --- configuration and persistence -----------------------------------------------------
    def config(self) -> dict:
        return {
            "space": self.space.to_dict(),
            "budget": self.budget,
            "price_per_hour": self.price_per_hour,
            "seed": self.seed,
            "acquisition": self.acquisition,
            "reserve": self.reserve,
            "cost_quantile": self.cost_quantile,
            "prior": self.prior.to_dict(),
            "tokens_per_step": self.tokens_per_step,
            "seq_len": self.seq_len,
            "cost_model": self.cost_model.to_dict(),
            "n_initial": self.n_initial,
            "lr_grid_size": self.lr_grid_size,
        }

    def _open_journal(self, load_if_exists: bool) -> None:
        path = self.journal_path
        if path.is_dir():
            raise JournalError(f"journal {path} is a directory: give the path of a .jsonl file")
        # blank lines are no study: a file holding only those is started afresh
        exists = path.exists() and path.read_bytes().strip() != b""
        if exists and not load_if_exists:
            raise JournalError(
                f"journal {path} already exists: resume it with Study.load({str(path)!r}), pass "
                "load_if_exists=True, or choose a new path"
            )
        self._journal = Journal(path)
        if exists:
            events, valid = read_events(path)
            stored = events[0]["config"]
            mine = self.config()
            for key in mine:
                if stored.get(key) != mine[key] and key != "budget":
                    self.close()
                    raise JournalError(
                        f"journal {path} was created with a different {key} "
                        f"({stored.get(key)!r}, now {mine[key]!r}): use Study.load({str(path)!r}) "
                        "to resume it as it was, or choose a new journal path"
                    )
            self._journal.repair_tail(valid)
            wanted = self.budget
            self.budget = float(stored["budget"])
            try:
                self._replay(events[1:])
            except BaseException:
                self.close()
                raise
            if wanted != self.budget:
                self.set_budget(wanted)
        else:
            self._journal.append(
                {
                    "event": "create",
                    "version": FORMAT_VERSION,
                    "time": time.time(),
                    "config": self.config(),
                }
            )

    @classmethod
    def load(cls, path: str | Path, *, read_only: bool = False) -> Study:
        """Rebuild a study from its journal: same trials, same spend, same next proposal.

        With ``read_only`` the journal is not locked (for ``status``/plots while a loop runs);
        such a study cannot ask, tell, set_budget or log_event.
        """
        path = Path(path)
        events, valid = read_events(path)
        if not events:
            raise JournalError(f"journal {path} is empty: nothing to load")
        try:
            study = cls._from_config(events[0]["config"], path)
        except (KeyError, TypeError, ValueError) as err:
            raise JournalError(
                f"journal {path}: its 'create' event (line 1) is malformed ({err!r}): restore "
                "the file from a copy (S3 sync keeps one)"
            ) from None
        if not read_only:
            study._journal = Journal(path)
        try:
            if study._journal is not None:
                study._journal.repair_tail(valid)
            study._replay(events[1:])
        except BaseException:
            study.close()  # a failed load must not keep the journal locked
            raise
        return study

    @classmethod
    def _from_config(cls, config: dict, path: Path | None) -> Study:
        return cls(
            SearchSpace.from_dict(config["space"]),
            budget=config["budget"],
            price_per_hour=config["price_per_hour"],
            journal=path,
            seed=config["seed"],
            acquisition=config["acquisition"],
            reserve=config["reserve"],
            cost_quantile=config["cost_quantile"],
            prior=LearningRatePrior.from_dict(config["prior"]),
            tokens_per_step=config["tokens_per_step"],
            seq_len=config["seq_len"],
            cost_model=CostModel.from_dict(config["cost_model"]),
            n_initial=config["n_initial"],
            lr_grid_size=config["lr_grid_size"],
            _replaying=True,
        )

    def _replay(self, events: list[dict]) -> None:
        for event in events:
            kind = event.get("event")
            try:
                if kind == "ask":
                    self._trials.append(Trial.from_dict(event["trial"]))
                elif kind == "tell":
                    self._apply_tell(event["trial_id"], event["result"])
                elif kind == "cost_seed":
                    self._apply_cost_seed(event)
                elif kind == "budget":
                    self.budget = float(event["budget"])
                # unknown events (written by newer versions, or notes such as 'final') are
                # kept in the file and ignored here
            except (KeyError, IndexError, TypeError, ValueError) as err:
                # a hand-edited or foreign line: name it, not the line of costbo that tripped
                raise JournalError(
                    f"journal {self.journal_path}: this {kind!r} event is malformed ({err!r}): "
                    f"{json.dumps(event)[:200]}; restore the file from a copy (S3 sync keeps "
                    "one) or remove that line by hand"
                ) from None

    def _log(self, event: dict) -> None:
        if self._journal is not None:
            self._journal.append({**event, "time": time.time()})

    def log_event(self, event: dict) -> None:
        """Append a free-form event (e.g. the final run's outcome) to the journal."""
        # every name that replay acts on: a custom 'budget' event without a valid budget would
        # make the journal impossible to load
        if not isinstance(event, dict) or event.get("event") in (None, *REPLAYED_EVENTS):
            raise ValueError(
                f"a custom event needs its own 'event' name, not one of {list(REPLAYED_EVENTS)}"
                ", e.g. {'event': 'note', ...}"
            )
        self._require_writable()  # a read-only study would drop it without a word
        self._log(event)

    def close(self) -> None:
        """Release the journal's lock; the study can still be read but not asked or told."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _require_writable(self) -> None:
        if self.journal_path is not None and self._journal is None:
            raise JournalError(
                f"this study's journal {self.journal_path} is closed or read-only: open it with "
                "Study.load(path) to ask or tell"
            )

    def set_budget(self, budget: float) -> None:
        """Change the total tuning budget (dollars); spend so far is unchanged."""
        self._require_writable()  # else the change would vanish at the next load
        self.budget = _positive("budget", budget, "give the tuning budget in dollars, e.g. 20.0")
        self._log({"event": "budget", "budget": self.budget})

    # --- trials and money ------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        return list(self._trials)

    @property
    def spent(self) -> float:
        """Dollars spent: the sum of the told runs' seconds x price (failed runs included)."""
        return float(sum(t.cost or 0.0 for t in self._trials if t.cost is not None))

    @property
    def pending_cost(self) -> float:
        """Dollars reserved for asked, not yet told runs (their upper predicted cost)."""
        return float(sum(t.predicted_cost_upper for t in self._pending()))

    @property
    def remaining(self) -> float:
        """Dollars a new run may cost: budget - spent - pending reservations - reserve."""
        return self.budget - self.spent - self.pending_cost - self.reserve

    def _pending(self) -> list[Trial]:
        return [t for t in self._trials if t.status is TrialStatus.PENDING]

    def predict_cost(self, steps: int, model: ModelShape) -> CostPrediction:
        return self.cost_model.predict(steps, model, self.cost_quantile)

    def seed_cost(
        self, model: object, step_seconds: float, overhead_seconds: float | None = None
    ) -> None:
        """Seed the cost model with a measured seconds-per-step (e.g. from ``costbo probe``)."""
        shape = as_model(model, "seed_cost model")
        event = {
            "event": "cost_seed",
            "model": list(shape.as_tuple()),
            "step_seconds": float(step_seconds),
            "overhead_seconds": None if overhead_seconds is None else float(overhead_seconds),
        }
        self._require_writable()
        self._apply_cost_seed(event)
        self._log(event)

    def _apply_cost_seed(self, event: dict) -> None:
        self.cost_model.seed(
            ModelShape(*event["model"]), event["step_seconds"], event.get("overhead_seconds")
        )
        self._cost_seeds.append(event)
        self._state_key = None

    # --- ask -------------------------------------------------------------------------------
    def ask(
        self,
        lr: float | None = None,
        steps: int | None = None,
        model: object | None = None,
    ) -> Trial:
        """Propose the next run, or raise ``BudgetExhausted`` if no run fits the budget.

        Passing ``lr``, ``steps`` and ``model`` (a width or (depth, channels, heads)) records a
        run of the caller's choosing instead (still within the space and the budget).
        """
        self._require_writable()
        remaining = self.remaining
        if lr is not None or steps is not None or model is not None:
            return self._ask_fixed(lr, steps, model, remaining)
        with _single_threaded():
            fidelity, log10_lr, prediction = self._propose(remaining)
        return self._new_trial(10.0**log10_lr, fidelity, prediction)

    def _ask_fixed(self, lr, steps, model, remaining) -> Trial:
        if lr is None or steps is None or model is None:
            raise ValueError("a fixed trial needs all of lr, steps and model")
        lr = _positive("lr", lr, "give the max learning rate, e.g. 6e-4")
        if not self.space.contains_lr(lr):
            lo, hi = self.space.lr_bounds
            raise ValueError(f"lr {lr:g} is outside the search space's bounds ({lo:g}, {hi:g})")
        fidelity = self.space.find(steps, model)
        prediction = self.predict_cost(fidelity.steps, fidelity.model)
        if prediction.upper_dollars > remaining:
            raise BudgetExhausted(
                f"a run of {fidelity} may cost up to ${prediction.upper_dollars:.2f} "
                f"(q{self.cost_quantile:.2f}) but only ${max(remaining, 0):.2f} remains"
            )
        return self._new_trial(lr, fidelity, prediction)

    def _new_trial(self, lr: float, fidelity: Fidelity, prediction: CostPrediction) -> Trial:
        shape = fidelity.model
        trial = Trial(
            id=len(self._trials),
            lr=float(lr),
            steps=fidelity.steps,
            depth=shape.depth,
            width=shape.channels,
            heads=shape.heads,
            predicted_seconds=prediction.seconds,
            predicted_cost=prediction.dollars,
            predicted_cost_upper=prediction.upper_dollars,
            asked_at=time.time(),
        )
        self._trials.append(trial)
        self._log({"event": "ask", "trial": trial.to_dict()})
        return trial

    def _predictions(self) -> dict[Fidelity, CostPrediction]:
        return {f: self.predict_cost(f.steps, f.model) for f in self.space.fidelities}

    def _propose(self, remaining: float) -> tuple[Fidelity, float, CostPrediction]:
        predictions = self._predictions()
        affordable = [f for f in self.space.fidelities if predictions[f].upper_dollars <= remaining]
        if not affordable:
            cheapest = min(predictions.values(), key=lambda p: p.upper_dollars)
            raise BudgetExhausted(
                f"no run fits the remaining ${max(remaining, 0):.2f} (budget ${self.budget:.2f}, "
                f"spent ${self.spent:.2f}, pending ${self.pending_cost:.2f}, reserve "
                f"${self.reserve:.2f}); the cheapest run may cost up to "
                f"${cheapest.upper_dollars:.2f} (q{self.cost_quantile:.2f})"
            )
        taken = self._taken_points() | self._doomed_points()
        initial = self._initial_design(affordable, predictions, taken)
        if initial is not None:
            return initial
        state = self._fit()
        post: LossPosterior = state["posterior"]
        pending = [t for t in self._pending()]
        if pending:
            post = post.with_fantasies(self._inputs(pending))
        target = self._target_slice(state)
        if self.acquisition == "regret_per_dollar":
            # only fidelities with an LR left to run: a cheap rung can have had its whole grid
            # run (llm.c is deterministic, so a repeat buys nothing) while it still looks the
            # most informative per dollar, and stopping there would leave the budget unspent
            n = len(self.lr_grid)
            open_ = [f for f in affordable if any((f, i) not in taken for i in range(n))]
            affordable = [self._best_fidelity(open_ or affordable, predictions, post)]
        rows = []
        for f in affordable:
            s, w = self.space.fidelity_coordinates(f)
            best = state["optimum"][f]
            lo, hi = best + CANDIDATE_WINDOW[0], best + CANDIDATE_WINDOW[1]
            for i, u in enumerate(self.lr_grid):
                if lo <= u <= hi and (f, i) not in taken:
                    rows.append((f, i, u, s, w))
        if not rows:  # every affordable point in the windows was run already: widen to all
            for f in affordable:
                s, w = self.space.fidelity_coordinates(f)
                rows.extend(
                    (f, i, u, s, w) for i, u in enumerate(self.lr_grid) if (f, i) not in taken
                )
        if not rows:
            raise BudgetExhausted(
                "every affordable (LR, fidelity) point has been run already, or lies at or "
                "above an LR that diverged at that fidelity"
            )
        u = np.array([r[2] for r in rows])
        s = np.array([r[3] for r in rows])
        w = np.array([r[4] for r in rows])
        opt = np.array([state["optimum"][r[0]] for r in rows])
        z = to_inputs(u, s, w)
        rung_best = np.array([state["rung_best_loss"][r[0]] for r in rows])
        cand = Candidates(
            z=z,
            log10_lr=u,
            p_diverge=self._divergence.probability(u, s, w, opt),
            dollars=np.array([predictions[r[0]].dollars for r in rows]),
            noise=post.base_noise + expected_far_noise(post.mean(z).numpy(), rung_best),
        )
        values = ACQUISITIONS[self.acquisition](post, cand, target)
        values = np.where(np.isfinite(values), values, -np.inf)
        # ties (e.g. all zero when nothing can improve) go to the cheaper run
        order = np.lexsort((cand.dollars, -values))
        best_row = rows[int(order[0])]
        return best_row[0], float(best_row[2]), predictions[best_row[0]]

    def _best_fidelity(self, affordable, predictions, post: LossPosterior) -> Fidelity:
        """The affordable fidelity whose runs most reduce the full-scale optimum's variance per
        dollar (``acquisition.fidelity_values``); the cheapest if none would."""
        pending: dict = {}
        for t in self._pending():
            key = (t.steps, t.model)
            pending[key] = pending.get(key, 0) + 1
        candidates = []
        for f in affordable:
            s, w = self.space.fidelity_coordinates(f)
            candidates.append(((f.steps, f.model), s, w, predictions[f].dollars))
        values, _ = fidelity_values(post.drift, post.rungs, candidates, pending)
        dollars = np.array([c[3] for c in candidates])
        order = np.lexsort((dollars, -values))  # ties (nothing helps) go to the cheaper
        return affordable[int(order[0])]

    def _taken_points(self) -> set[tuple[Fidelity, int]]:
        """(fidelity, LR grid index) of every trial that is pending or taught something: llm.c
        is deterministic, so running the same flags twice buys nothing."""
        taken = set()
        for t in self._trials:
            if t.status in (TrialStatus.FAILED, TrialStatus.INTERRUPTED):
                continue
            fid = Fidelity(t.steps, t.model)
            idx = int(np.abs(self.lr_grid - math.log10(t.lr)).argmin())
            taken.add((fid, idx))
        return taken

    def _doomed_points(self) -> set[tuple[Fidelity, int]]:
        """(fidelity, LR grid index) at or above an LR that diverged at that same fidelity.

        llm.c runs the same data in the same order at a fixed (steps, shape), so a higher max LR
        there only makes the same run less stable: such a run would diverge too and its money
        would buy nothing. The soft divergence model alone can leave one looking worth a try,
        and a study whose first runs all diverged then climbed into one certain divergence after
        another. Other fidelities are not ruled out: a longer run warms up for longer, and a
        narrower model tolerates higher LRs.
        """
        lowest: dict[Fidelity, float] = {}
        for t in self._trials:
            if t.status is TrialStatus.DIVERGED:
                fid = Fidelity(t.steps, t.model)
                lowest[fid] = min(lowest.get(fid, math.inf), math.log10(t.lr))
        return {
            (fid, i)
            for fid, ceiling in lowest.items()
            for i in np.flatnonzero(self.lr_grid >= ceiling - 1e-9).tolist()
        }

    def _initial_design(self, affordable, predictions, taken):
        """A few cheap runs spread over log LR at the cheapest rung before any model is used."""
        informative = [
            t for t in self._trials if t.status in (TrialStatus.PENDING, TrialStatus.COMPLETE,
                                                    TrialStatus.DIVERGED)
        ]  # fmt: skip
        if len(informative) >= self.n_initial:
            return None
        cheapest = min(affordable, key=lambda f: (predictions[f].dollars, f.steps, f.width))
        # Never spend more than a third of the budget on the initial design.
        n = min(self.n_initial, int(self.budget / 3 / max(predictions[cheapest].dollars, 1e-9)))
        if len(informative) >= n:
            return None
        s, w = self.space.fidelity_coordinates(cheapest)
        rng = np.random.default_rng(self.seed)
        jitter = rng.uniform(-0.1, 0.1)
        centre = self.prior.optimum(s, w) + jitter
        offsets = np.linspace(INITIAL_OFFSETS[0], INITIAL_OFFSETS[-1], max(n, 1)) if n > 1 else [0]
        for off in offsets:
            u = float(np.clip(centre + off, *self.space.log10_lr_bounds))
            idx = int(np.abs(self.lr_grid - u).argmin())
            if (cheapest, idx) not in taken:
                return cheapest, float(self.lr_grid[idx]), predictions[cheapest]
        return None

    # --- the models ------------------------------------------------------------------------
    def _inputs(self, trials: list[Trial]) -> torch.Tensor:
        coords = [self.space.fidelity_coordinates(Fidelity(t.steps, t.model)) for t in trials]
        return to_inputs(
            [math.log10(t.lr) for t in trials], [c[0] for c in coords], [c[1] for c in coords]
        )

    def _fit(self) -> dict:
        """Fit the surrogate and divergence model to the told runs (cached until the next tell)."""
        key = (
            tuple((t.id, t.status.value) for t in self._trials if t.is_finished),
            len(self._cost_seeds),
        )
        if key == self._state_key:
            return self._state
        done = [t for t in self._trials if t.status is TrialStatus.COMPLETE]
        coords = [self.space.fidelity_coordinates(Fidelity(t.steps, t.model)) for t in done]
        post = self._surrogate.fit(
            [math.log10(t.lr) for t in done],
            [c[0] for c in coords],
            [c[1] for c in coords],
            [t.val_loss for t in done],
            [(t.steps, t.model) for t in done],
        )
        optimum, rung_best_loss = self._rung_optima(post)
        informative = [
            t for t in self._trials if t.status in (TrialStatus.COMPLETE, TrialStatus.DIVERGED)
        ]
        fids = [Fidelity(t.steps, t.model) for t in informative]
        coords = [self.space.fidelity_coordinates(f) for f in fids]
        self._divergence.fit(
            [math.log10(t.lr) for t in informative],
            [c[0] for c in coords],
            [c[1] for c in coords],
            [t.diverged for t in informative],
            [optimum[f] for f in fids],
        )
        finite = [t.val_loss for t in done]
        self._state = {
            "posterior": post,
            "optimum": optimum,
            "rung_best_loss": rung_best_loss,
            "max_loss": max(finite, default=0),
        }
        self._state_key = key
        return self._state

    def _rung_optima(self, post: LossPosterior) -> tuple[dict[Fidelity, float], dict]:
        """Best log10 LR of the posterior mean at every fidelity, searched within
        TARGET_WINDOW decades of the prior's, so that a flat or ill-determined rung cannot
        point at the grid's edge; and the posterior mean loss there (nats)."""
        fids = list(self.space.fidelities)
        coords = [self.space.fidelity_coordinates(f) for f in fids]
        g = len(self.lr_grid)
        u = np.tile(self.lr_grid, len(fids))
        s = np.repeat([c[0] for c in coords], g)
        w = np.repeat([c[1] for c in coords], g)
        mean = post.mean(to_inputs(u, s, w)).numpy().reshape(len(fids), g)
        optimum, best_loss = {}, {}
        for k, f in enumerate(fids):
            prior_opt = self.prior.optimum(*coords[k])
            inside = np.abs(self.lr_grid - prior_opt) <= TARGET_WINDOW + 1e-9
            if not inside.any():
                inside = np.abs(self.lr_grid - prior_opt) == np.abs(self.lr_grid - prior_opt).min()
            row = np.where(inside, mean[k], np.inf)
            optimum[f] = float(self.lr_grid[row.argmin()])
            best_loss[f] = float(mean[k].min())
        return optimum, best_loss

    def _divergence_loss(self, state: dict) -> float:
        """Loss charged to a diverged full-scale run: worse than anything seen or predicted,
        and at least the loss of an untrained model."""
        return max(math.log(VOCAB_SIZE), state["max_loss"] + 1.0)

    def _target_window(self, state: dict) -> tuple[float, float]:
        """The log10-LR range where the full-scale answer may lie: the prior band widened to
        +-TARGET_WINDOW decades, stretched to include the posterior's current best. Outside
        it, unexplored edges of the slice (wide posterior, no data) would pose as optima."""
        centre = self.prior.target_log10_lr
        best = state["optimum"][self.space.target]
        lo = min(centre - TARGET_WINDOW, best - 0.5)
        hi = max(centre + TARGET_WINDOW, best + 0.5)
        bounds = self.space.log10_lr_bounds
        return max(lo, bounds[0]), min(hi, bounds[1])

    def _recommendation_window(self, state: dict) -> tuple[float, float]:
        """The target window, cut to within max(RECOMMENDATION_REACH, 3 sd) decades of the drift
        model's full-scale optimum. Far above every basin the data show, the target's posterior
        mean is the features' extrapolation and can turn down again (a second "basin" where no
        run has been, e.g. when short runs sit on a plateau up to the top of the LR range); an
        answer there would be a guess with a divergence margin measured from itself."""
        lo, hi = self._target_window(state)
        drift = state["posterior"].drift
        centre, reach = (
            float(drift.optimum(0.0, 0.0)),
            max(RECOMMENDATION_REACH, 3 * drift.sd(0.0, 0.0)),
        )
        bounds = self.space.log10_lr_bounds
        cut_lo, cut_hi = max(lo, centre - reach), min(hi, centre + reach)
        if cut_lo >= cut_hi:  # the drift's optimum lies outside the window: stay inside it
            cut_lo = cut_hi = float(np.clip(centre, lo, hi))
        return max(cut_lo, bounds[0]), min(cut_hi, bounds[1])

    def _target_slice(self, state: dict) -> TargetSlice:
        lo, hi = self._target_window(state)
        grid = self.lr_grid[(self.lr_grid >= lo - 1e-9) & (self.lr_grid <= hi + 1e-9)]
        if grid.size == 0:
            grid = np.array([np.clip(state["optimum"][self.space.target], lo, hi)])
        g = len(grid)
        z = to_inputs(grid, np.zeros(g), np.zeros(g))
        opt = state["optimum"][self.space.target]
        cap = self._lr_cap()
        p = self._divergence.probability(grid, 0.0, 0.0, opt)
        if cap is not None:
            p = np.where(grid >= math.log10(cap) - 1e-9, 1.0, p)
        return TargetSlice(z=z, log10_lr=grid, p_diverge=p,
                           divergence_loss=self._divergence_loss(state))  # fmt: skip

    def _lr_cap(self) -> float | None:
        diverged = [t.lr for t in self._trials if t.status is TrialStatus.DIVERGED]
        return min(diverged) if diverged else None

    # --- tell ------------------------------------------------------------------------------
    def tell(
        self,
        trial_id: int,
        val_loss: float | None = None,
        seconds: float | None = None,
        *,
        diverged: bool = False,
        failed: bool = False,
        interrupted: bool = False,
        error: str | None = None,
        user_attrs: dict | None = None,
    ) -> Trial:
        """Record a run's outcome. ``seconds`` (wall or simulated) is always required: money
        spent is accounted whatever happened. Exactly one of: a finite ``val_loss`` (nats),
        ``diverged=True``, ``failed=True`` (crashed for a reason unrelated to the LR) or
        ``interrupted=True`` (stopped before it finished)."""
        self._require_writable()
        trial = self._get(trial_id)
        if trial.is_finished:
            raise ValueError(
                f"trial {trial_id} was already told ({trial.status.value}, val_loss "
                f"{trial.val_loss}); each trial is told once"
            )
        result = self._validate_tell(
            trial_id, val_loss, seconds, diverged, failed, interrupted, error, user_attrs
        )
        result["told_at"] = time.time()
        self._log({"event": "tell", "trial_id": trial_id, "result": result})
        return self._apply_tell(trial_id, result)

    def _get(self, trial_id: int) -> Trial:
        if isinstance(trial_id, bool) or not isinstance(trial_id, int | np.integer):
            raise ValueError(f"trial id {trial_id!r} must be an integer (Trial.id)")
        if not 0 <= trial_id < len(self._trials):
            known = f"0..{len(self._trials) - 1}" if self._trials else "none yet"
            raise ValueError(f"trial {trial_id} does not exist; asked trials are {known}")
        return self._trials[int(trial_id)]

    @staticmethod
    def _validate_tell(trial_id, val_loss, seconds, diverged, failed, interrupted, error, attrs):
        if seconds is None:
            raise ValueError(
                f"tell({trial_id}) needs seconds= (the run's wall-clock or simulated seconds): "
                "the money a run spent is always accounted"
            )
        if not _is_number(seconds):
            raise ValueError(f"seconds {seconds!r} for trial {trial_id} must be a number")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds {seconds!r} for trial {trial_id} must be finite and >= 0")
        flags = sum(bool(x) for x in (diverged, failed, interrupted))
        if flags > 1:
            raise ValueError(
                f"trial {trial_id}: choose one of diverged, failed, interrupted, not several"
            )
        if flags == 0:
            if val_loss is None:
                raise ValueError(
                    f"tell({trial_id}) needs val_loss= for a finished run, or diverged=True, "
                    "failed=True or interrupted=True"
                )
            if not _is_number(val_loss):
                raise ValueError(f"val_loss {val_loss!r} for trial {trial_id} must be a number")
            if not math.isfinite(val_loss):
                raise ValueError(
                    f"val_loss {val_loss} for trial {trial_id} is not finite: if the run "
                    f"diverged, tell({trial_id}, diverged=True, seconds=...)"
                )
            if val_loss < 0:
                raise ValueError(
                    f"val_loss {val_loss} for trial {trial_id} is negative: a cross-entropy "
                    "loss is >= 0; check which number was passed"
                )
            status = TrialStatus.COMPLETE
        else:
            status = (
                TrialStatus.DIVERGED
                if diverged
                else TrialStatus.FAILED
                if failed
                else TrialStatus.INTERRUPTED
            )
        loss = None
        if val_loss is not None and _is_number(val_loss):
            # the journal has no NaN: keep memory and a resumed study identical
            loss = float(val_loss) if math.isfinite(val_loss) else None
        return {
            "status": status.value,
            "val_loss": loss,
            "seconds": float(seconds),
            "error": error,
            "user_attrs": dict(attrs or {}),
        }

    def _apply_tell(self, trial_id: int, result: dict) -> Trial:
        trial = self._trials[trial_id]
        trial.status = TrialStatus(result["status"])
        trial.val_loss = result.get("val_loss")
        trial.seconds = float(result["seconds"])
        trial.cost = self.cost_model.dollars(trial.seconds)
        trial.told_at = result.get("told_at")
        trial.error = result.get("error")
        trial.user_attrs.update(result.get("user_attrs") or {})
        if trial.status is TrialStatus.COMPLETE:
            self.cost_model.observe(trial.steps, trial.model, trial.seconds)
        self._state_key = None
        return trial

    # --- answers ---------------------------------------------------------------------------
    def recommend(self) -> Recommendation:
        """The LR to run at full scale, with a 90% interval and the predicted val loss."""
        informative = [
            t for t in self._trials if t.status in (TrialStatus.COMPLETE, TrialStatus.DIVERGED)
        ]
        if not informative:
            raise ValueError(
                "no finished runs yet: tell() at least one completed or diverged run before "
                "recommend()"
            )
        with _single_threaded():
            return self._recommend()

    def _recommend(self) -> Recommendation:
        informative = [
            t for t in self._trials if t.status in (TrialStatus.COMPLETE, TrialStatus.DIVERGED)
        ]
        state = self._fit()
        lo, hi = self._recommendation_window(state)
        grid = np.linspace(lo, hi, RECOMMENDATION_GRID)
        rec = recommend(
            state["posterior"],
            self._divergence,
            grid,
            lr_cap=self._lr_cap(),
            divergence_loss=self._divergence_loss(state),
            target_steps=self.space.target.steps,
            target_width=self.space.target.width,
            n_observations=len(informative),
            optimum_sd=state["posterior"].drift.sd(0.0, 0.0),
        )
        # The answer is searched within the LR bounds, so its interval ends there too: with
        # narrow bounds (or an optimum near one) +-1.645 sd would reach LRs the user ruled out.
        # Nor can the best full-scale LR lie at or above an LR that diverged at a smaller
        # fidelity (the answer's own cap), so the interval ends below that as well.
        low, high = self.space.lr_bounds
        if rec.lr_cap is not None:
            high = min(high, rec.lr_cap)
        return dataclasses.replace(
            rec,
            lr_low=min(max(rec.lr_low, low), rec.lr),
            lr_high=max(min(rec.lr_high, high), rec.lr),
        )

    def posterior_slice(
        self, fidelity: Fidelity | None = None, log10_lr: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Posterior mean and sd of the val loss (nats) over an LR grid at one fidelity
        (default: the target), and the probability of divergence there: for plots."""
        fidelity = fidelity or self.space.target
        with _single_threaded():
            state = self._fit()
        s, w = self.space.fidelity_coordinates(fidelity)
        u = np.linspace(*self.space.log10_lr_bounds, 121) if log10_lr is None else log10_lr
        z = to_inputs(u, np.full(len(u), s), np.full(len(u), w))
        post = state["posterior"]
        opt = state["optimum"].get(fidelity, self.prior.optimum(s, w))
        return {
            "lr": 10.0**u,
            "mean": post.mean(z).numpy(),
            "sd": post.var(z).sqrt().numpy(),
            "p_diverge": self._divergence.probability(u, s, w, opt),
        }

    def best_lr(self, fidelity: Fidelity) -> float:
        """The model's best LR at a fidelity (posterior-mean argmin on the candidate grid)."""
        if fidelity not in self.space.fidelities:
            raise ValueError(
                f"({fidelity}) is not in this study's search space: pick one of "
                "study.space.fidelities, or space.find(steps, model)"
            )
        with _single_threaded():
            return 10.0 ** self._fit()["optimum"][fidelity]

    def trials_dataframe(self):
        """One row per trial (pandas): id, lr, steps, width, depth, heads, status, val_loss,
        diverged, seconds, cost, predicted_seconds, predicted_cost, asked_at, told_at, error."""
        import pandas as pd

        rows = []
        for t in self._trials:
            rows.append(
                {
                    "id": t.id,
                    "lr": t.lr,
                    "steps": t.steps,
                    "width": t.width,
                    "depth": t.depth,
                    "heads": t.heads,
                    "status": t.status.value,
                    "val_loss": t.val_loss,
                    "diverged": t.diverged,
                    "seconds": t.seconds,
                    "cost": t.cost,
                    "predicted_seconds": t.predicted_seconds,
                    "predicted_cost": t.predicted_cost,
                    "predicted_cost_upper": t.predicted_cost_upper,
                    "asked_at": pd.to_datetime(t.asked_at, unit="s", utc=True),
                    "told_at": pd.to_datetime(t.told_at, unit="s", utc=True)
                    if t.told_at is not None
                    else pd.NaT,
                    "error": t.error,
                }
            )
        columns = [
            "id", "lr", "steps", "width", "depth", "heads", "status", "val_loss", "diverged",
            "seconds", "cost", "predicted_seconds", "predicted_cost", "predicted_cost_upper",
            "asked_at", "told_at", "error",
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)

    def __repr__(self) -> str:
        return (
            f"Study({len(self._trials)} trials, spent ${self.spent:.2f} of ${self.budget:.2f}, "
            f"acquisition={self.acquisition!r})"
        )


__all__ = ["Study", "BudgetExhausted"]
