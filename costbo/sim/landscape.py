"""Simulated llm.c worlds: the final val loss of a GPT-2 run over (max LR, steps, model shape).

A landscape is drawn from a family with a seed. Every one has the same anatomy
(docs/simulator.md gives the sources of each range):

- level: the loss at the best LR follows a scaling law in parameters and tokens,
  ``E + A / N_eff^a + B / D^b``, softly capped below the unigram plateau and anchored so that the
  target (GPT-2 124M, 4725 steps x 524288 tokens) lands in 3.4-3.6 nats;
- optimum: ``ln lr*(steps, model)`` = the target's best LR (drawn from 6e-4 .. 3e-3) plus a drift
  in ln width, ln depth and ln steps whose form is what the families vary;
- basin in ``u = ln(lr / lr*)``: ``c2 u^2 + c4 u^4`` above the optimum (steep), and below it a
  gentle quadratic that turns into a power-law tail and saturates at the initial loss
  ln(50257) for LRs thousands of times too small; penalties sharpen for short runs;
- divergence: above ``divergence_ratio x`` the best LR the run blows up (NaN);
- roughness: a smooth random function of ``u`` (a few random cosines), ~0.003 nats, fixed per
  (seed, steps, shape), so identical flags give identical losses as llm.c does.

Families (``FAMILIES``, "calibrated" first) share those draws for a seed and change one thing, so
that no method wins by matching the simulator's own formula: curved (non-power-law) drift, no
drift, narrow basins, early divergence, and a width trend that bends at large scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from costbo.gpt2 import (
    MAX_SEQ_LEN,
    PADDED_VOCAB_SIZE,
    TARGET_STEPS,
    TOKENS_PER_STEP,
    VOCAB_SIZE,
    ModelShape,
)
from costbo.sim.gpu import SimulatedA10G
from costbo.space import Fidelity

INIT_LOSS = math.log(VOCAB_SIZE)  # a from-scratch GPT-2 predicts uniformly: ln(50257) nats
UNIGRAM_LOSS = 7.6  # the plateau a model reaches first; the level law stays below it
REFERENCE = Fidelity(TARGET_STEPS, ModelShape(12, 768, 12))  # where the drawn best LR lives
PUBLISHED_BEST_LR = (6e-4, 3e-3)  # GPT-3 table / llm.c .. Step Law for 124M at 2.5B tokens
FAMILIES = (
    "calibrated",
    "curved_drift",
    "no_drift",
    "narrow_basin",
    "early_divergence",
    "bent_extrapolation",
)
_LN2 = math.log(2.0)
_SHORT_RUN_STEPS = 100.0  # runs much shorter than this are dominated by warmup and decay
_ROUGHNESS_TERMS = 6
_MAX_SHIFT = 1.25  # realized / nominal best LR at a fidelity, at most this factor


@dataclass(frozen=True)
class LandscapeParams:
    """The drawn constants of one landscape (natural logs; LRs in absolute units)."""

    # the target (reference) run
    best_lr: float  # argmin of the target's val loss, log-uniform in PUBLISHED_BEST_LR
    target_loss: float  # level at the target's best LR, nats
    # level law: E + A / N_eff^a + B / D^b, N_eff = non-embedding + w_emb * embedding params
    irreducible_loss: float
    params_exponent: float
    tokens_exponent: float
    embedding_weight: float
    params_share: float  # share of the target's reducible loss due to model size
    # drift of ln lr*: -width_slope ln(C/768) - depth_slope ln(L/12) - steps_slope ln(S/4725)
    width_slope: float
    depth_slope: float
    steps_slope: float
    short_run_boost: float  # extra ln(1 + boost * 100 / steps): short runs like larger LRs
    width_curvature: float = 0.0  # curved_drift: + k_w ln(C/768)^2
    steps_curvature: float = 0.0  # curved_drift: + k_s ln(S/4725)^2
    width_steps_interaction: float = 0.0  # curved_drift: + k_ws ln(C/768) ln(S/4725)
    bend_slope_change: float = 0.0  # bent_extrapolation: width slope change above bend_width
    bend_width: float = 320.0
    # basin at the target, sharpened for short runs by (steps / 4725)^-short_run_sharpening
    penalty_2x: float = 0.012  # nats at 2x the best LR
    ratio_4x: float = 6.0  # penalty at 4x / penalty at 2x
    low_side_ratio: float = 0.35  # penalty at 0.5x / penalty at 2x
    short_run_sharpening: float = 0.2
    penalty_100x_below: float = 1.0  # nats at 1/100 of the best LR (the low tail)
    low_tail_power: float = 4.0
    low_tail_steps_shift: float = 0.6  # tail moves this many e-folds closer per e-fold fewer steps
    # divergence
    divergence_ratio: float = 7.0  # runs diverge above this multiple of the best LR
    divergence_width_slope: float = 0.0  # early_divergence: small models tolerate more
    # roughness
    roughness: float = 0.003  # nats (standard deviation)
    roughness_scale: float = 0.35  # correlation length in ln LR

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Slice:
    """Everything val_loss needs at one (steps, model), precomputed once."""

    log_lr_star: float  # nominal optimum (before roughness)
    log_lr_div: float  # runs with ln lr above this diverge
    level: float
    span: float  # INIT_LOSS - level: how far a too-small LR can leave the loss
    c2: float
    c4: float
    a2: float
    tail_scale: float
    tail_power: float
    rough: tuple[tuple[float, float, float], ...]
    best: tuple[float, float] | None = None  # (best lr, its val loss), filled lazily


def _as_model(model: object) -> ModelShape:
    if isinstance(model, ModelShape):
        return model
    if isinstance(model, int) and not isinstance(model, bool):
        return ModelShape.from_width(model)
    if isinstance(model, Sequence) and len(model) == 3:
        return ModelShape(*(int(v) for v in model))
    raise TypeError(f"model {model!r} is not a ModelShape, a width or a (depth, channels, heads)")


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


class Landscape:
    """One simulated llm.c world. Build with ``sample_landscape(family, seed)``.

    LRs are llm.c's ``-l``; ``steps`` its ``-x``; ``model`` a ``ModelShape`` (``-1d -1c -1h``).
    Losses are nats; seconds are simulated A10G wall time (``gpu``), dollars at
    ``gpu.price_per_hour``.
    """

    def __init__(
        self,
        params: LandscapeParams,
        *,
        family: str = "calibrated",
        seed: int = 0,
        gpu: SimulatedA10G | None = None,
        target: Fidelity | None = None,
    ) -> None:
        self.params = params
        self.family = family
        self.seed = seed
        self.gpu = gpu or SimulatedA10G()
        self.target = target or REFERENCE
        self._slices: dict[tuple, _Slice] = {}
        self._init_level_law()
        # The roughness moves every fidelity's argmin off its nominal optimum. At every fidelity
        # alike it is redrawn (deterministically) until that shift is within a factor
        # _MAX_SHIFT, so that an optimum is the smooth one plus noise, not a roughness
        # artifact that would erase the calibrated asymmetry around it. (Redrawing at the
        # target alone made the other rungs' realized optima sit ~0.04 decades below a smooth
        # extrapolation to the target's: the asymmetric basin lets roughness push argmins
        # further to its gentle side, and the selection removed that at the target only.)
        # Then the nominal optimum is shifted so that the realized best LR at the reference is
        # exactly the drawn one.
        self._log_lr_anchor = math.log(params.best_lr)
        self._target_offset = 0.0
        self._salts: dict[tuple, int] = {}
        offset = self._argmin_offset(REFERENCE.steps, REFERENCE.model)
        self._log_lr_anchor -= offset
        self._target_offset = offset
        self._slices.clear()

    def __repr__(self) -> str:
        best = self.params.best_lr
        return f"Landscape(family={self.family!r}, seed={self.seed}, best_lr={best:.3g})"

    # --- level ----------------------------------------------------------------------------
    def _init_level_law(self) -> None:
        p = self.params
        cap = UNIGRAM_LOSS - p.irreducible_loss
        target_excess = p.target_loss - p.irreducible_loss
        if not 0 < target_excess < cap:
            raise ValueError(f"target_loss {p.target_loss} must lie between E and {UNIGRAM_LOSS}")
        # invert the soft cap y / (1 + (y/cap)^3)^(1/3) at the target
        raw = target_excess / (1.0 - (target_excess / cap) ** 3) ** (1.0 / 3.0)
        n_ref = self._effective_params(REFERENCE.model)
        d_ref = REFERENCE.steps * TOKENS_PER_STEP
        self._level_a = p.params_share * raw * n_ref**p.params_exponent
        self._level_b = (1.0 - p.params_share) * raw * d_ref**p.tokens_exponent
        self._level_cap = cap

    def _effective_params(self, model: ModelShape) -> float:
        c = model.channels
        non_embedding = model.depth * (12 * c * c + 13 * c)
        embedding = (PADDED_VOCAB_SIZE + MAX_SEQ_LEN) * c
        return non_embedding + self.params.embedding_weight * embedding

    def level(self, steps: int, model: ModelShape) -> float:
        """Val loss at the nominal best LR, without roughness (nats)."""
        p = self.params
        y = self._level_a * self._effective_params(model) ** -p.params_exponent
        y += self._level_b * (steps * TOKENS_PER_STEP) ** -p.tokens_exponent
        return p.irreducible_loss + y / (1.0 + (y / self._level_cap) ** 3) ** (1.0 / 3.0)

    # --- optimum drift --------------------------------------------------------------------
    def _drift(self, steps: int, model: ModelShape) -> float:
        """ln(lr*(steps, model) / lr*(reference)) before roughness."""
        p = self.params
        s = math.log(steps / REFERENCE.steps)
        w = math.log(model.channels / REFERENCE.model.channels)
        d = math.log(model.depth / REFERENCE.model.depth)
        drift = -p.width_slope * w - p.depth_slope * d - p.steps_slope * s
        drift += math.log1p(p.short_run_boost * _SHORT_RUN_STEPS / steps)
        drift -= math.log1p(p.short_run_boost * _SHORT_RUN_STEPS / REFERENCE.steps)
        drift += p.width_curvature * w * w + p.steps_curvature * s * s
        drift += p.width_steps_interaction * w * s
        if p.bend_slope_change:
            wb = math.log(p.bend_width / REFERENCE.model.channels)
            tau = 0.25
            drift += p.bend_slope_change * tau * (_softplus((w - wb) / tau) - _softplus(-wb / tau))
        return drift

    # --- per-fidelity slice ---------------------------------------------------------------
    def _slice(self, steps: int, model: object) -> _Slice:
        if not isinstance(model, ModelShape):
            model = _as_model(model)
        key = (steps, model)
        sl = self._slices.get(key)
        if sl is not None:
            return sl
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
            raise ValueError(f"steps {steps!r} must be a positive integer (llm.c's -x)")
        salt = self._salts.get(key)
        if salt is None:
            salt = self._select_salt(int(steps), model)
            self._salts[key] = salt
        sl = self._build_slice(int(steps), model, salt)
        self._slices[key] = sl
        return sl

    def _select_salt(self, steps: int, model: ModelShape) -> int:
        """The first roughness draw whose argmin shift is within _MAX_SHIFT (the smallest
        shift of 64 draws if none is)."""
        tries = []
        for salt in range(64):
            sl = self._build_slice(steps, model, salt)
            offset = self._argmin_offset_of(sl)
            tries.append((abs(offset), salt))
            if abs(offset) <= math.log(_MAX_SHIFT):
                break
        return min(tries)[1]

    def _build_slice(self, steps: int, model: ModelShape, salt: int) -> _Slice:
        p = self.params
        log_lr_star = self._log_lr_anchor + self._drift(steps, model)
        level = self.level(steps, model)
        span = max(INIT_LOSS - level, 1e-3)
        sharp = (steps / REFERENCE.steps) ** -p.short_run_sharpening
        # high side: c2 u^2 + c4 u^4 through the target's penalties at 2x and 4x
        x2 = _LN2**2
        c4_ref = p.penalty_2x * (p.ratio_4x - 4.0) / (12.0 * x2 * x2)
        c2_ref = (p.penalty_2x - c4_ref * x2 * x2) / x2
        c2, c4 = c2_ref * sharp, c4_ref * math.sqrt(sharp)
        # low side: span * (1 - exp(-(a2 z^2 + (z / tail_scale)^power))), z = -u
        half = min(p.low_side_ratio * p.penalty_2x * sharp, 0.5 * span)
        a2 = -math.log1p(-half / span) / x2
        ref_span = INIT_LOSS - p.target_loss
        z100 = math.log(100.0)
        a2_ref = -math.log1p(-p.low_side_ratio * p.penalty_2x / ref_span) / x2
        tail_h = -math.log1p(-min(p.penalty_100x_below, 0.9 * ref_span) / ref_span)
        tail_h = max(tail_h - a2_ref * z100 * z100, 1e-3)
        tail_ref = z100 / tail_h ** (1.0 / p.low_tail_power)
        tail = max(tail_ref + p.low_tail_steps_shift * math.log(steps / REFERENCE.steps), 1.5)
        # divergence threshold: relative to the realized target optimum, same offset everywhere
        w = math.log(model.channels / REFERENCE.model.channels)
        log_div = (
            log_lr_star
            + self._target_offset
            + math.log(p.divergence_ratio)
            - p.divergence_width_slope * w
        )
        rng = np.random.default_rng(
            [self.seed, steps, model.depth, model.channels, model.heads, 0xB0B, salt]
        )
        amp = p.roughness * math.sqrt(2.0 / _ROUGHNESS_TERMS)
        freqs = rng.normal(0.0, 1.0 / p.roughness_scale, _ROUGHNESS_TERMS)
        phases = rng.uniform(0.0, 2.0 * math.pi, _ROUGHNESS_TERMS)
        rough = tuple((amp, float(f), float(ph)) for f, ph in zip(freqs, phases, strict=True))
        return _Slice(log_lr_star, log_div, level, span, c2, c4, a2, tail, p.low_tail_power, rough)

    # --- val loss -------------------------------------------------------------------------
    @staticmethod
    def _loss_at(sl: _Slice, u: float) -> float:
        if u >= 0.0:
            u2 = u * u
            pen = sl.c2 * u2 + sl.c4 * u2 * u2
        else:
            z = -u
            pen = -sl.span * math.expm1(-(sl.a2 * z * z + (z / sl.tail_scale) ** sl.tail_power))
        r = 0.0
        for amp, freq, phase in sl.rough:
            r += amp * math.cos(freq * u + phase)
        return sl.level + pen + r

    def val_loss(self, lr: float, steps: int, model: ModelShape) -> float:
        """Final val loss (nats) of a run at max LR ``lr``; ``nan`` if the run diverges."""
        sl = self._slice(steps, model)
        if not lr > 0.0:
            raise ValueError(f"lr {lr!r} must be a positive number")
        x = math.log(lr)
        if x > sl.log_lr_div:
            return math.nan
        return self._loss_at(sl, x - sl.log_lr_star)

    def val_losses(self, lrs: np.ndarray, steps: int, model: ModelShape) -> np.ndarray:
        """``val_loss`` over an array of LRs (vectorized; ``nan`` where the run diverges)."""
        sl = self._slice(steps, model)
        lrs = np.asarray(lrs, dtype=float)
        if np.any(~(lrs > 0)):
            raise ValueError("every lr must be a positive number")
        x = np.log(lrs)
        return self._losses_at(sl, x - sl.log_lr_star, x > sl.log_lr_div)

    @staticmethod
    def _losses_at(sl: _Slice, u: np.ndarray, diverged: np.ndarray | None = None) -> np.ndarray:
        z = np.maximum(-u, 0.0)
        up = np.maximum(u, 0.0)
        pen = np.where(
            u >= 0,
            sl.c2 * up**2 + sl.c4 * up**4,
            -sl.span * np.expm1(-(sl.a2 * z * z + (z / sl.tail_scale) ** sl.tail_power)),
        )
        r = sum(amp * np.cos(freq * u + phase) for amp, freq, phase in sl.rough)
        out = sl.level + pen + r
        if diverged is not None:
            out = np.where(diverged, np.nan, out)
        return out

    def diverges(self, lr: float, steps: int, model: ModelShape) -> bool:
        """Whether a run at max LR ``lr`` blows up (its loss ends NaN)."""
        if not lr > 0.0:
            raise ValueError(f"lr {lr!r} must be a positive number")
        return math.log(lr) > self._slice(steps, model).log_lr_div

    def divergence_lr(self, steps: int, model: ModelShape) -> float:
        """The smallest max LR that diverges at this fidelity."""
        return math.exp(self._slice(steps, model).log_lr_div)

    # --- optimum --------------------------------------------------------------------------
    def _argmin_offset(self, steps: int, model: ModelShape) -> float:
        """The u = ln(lr / lr*) that minimizes the loss below divergence (dense grid + refine)."""
        return self._argmin_offset_of(self._slice(steps, model))

    def _argmin_offset_of(self, sl: _Slice) -> float:
        u_hi = min(sl.log_lr_div - sl.log_lr_star, 3.0) - 1e-9
        grid = np.arange(-4.0, u_hi, 0.004)
        if grid.size == 0:
            grid = np.array([u_hi])
        losses = self._losses_at(sl, grid)
        i = int(np.argmin(losses))
        lo, hi = grid[max(i - 1, 0)], min(grid[min(i + 1, grid.size - 1)], u_hi)
        # golden-section on the bracket: the grid step is far below the roughness scale
        g = (math.sqrt(5.0) - 1.0) / 2.0
        a, b = float(lo), float(hi)
        c, d = b - g * (b - a), a + g * (b - a)
        fc, fd = self._loss_at(sl, c), self._loss_at(sl, d)
        for _ in range(40):
            if fc < fd:
                b, d, fd = d, c, fc
                c = b - g * (b - a)
                fc = self._loss_at(sl, c)
            else:
                a, c, fc = c, d, fd
                d = a + g * (b - a)
                fd = self._loss_at(sl, d)
        u = (a + b) / 2.0
        candidates = [(self._loss_at(sl, u), u), (float(losses[i]), float(grid[i]))]
        return min(candidates)[1]

    def best_lr(self, steps: int, model: ModelShape) -> float:
        """The max LR with the lowest final val loss at this fidelity (non-diverged)."""
        sl = self._slice(steps, model)
        if sl.best is None:
            u = self._argmin_offset(steps, model)
            sl.best = (math.exp(sl.log_lr_star + u), self._loss_at(sl, u))
        return sl.best[0]

    def trend_best_lr(self, steps: int, model: ModelShape) -> float:
        """The best LR this fidelity would have without its roughness: the reference's best LR
        moved by the smooth drift alone (``best_lr`` adds each fidelity's own roughness offset;
        at the reference the two agree)."""
        model = _as_model(model)
        drift = self._drift(steps, model) - self._drift(REFERENCE.steps, REFERENCE.model)
        return self.params.best_lr * math.exp(drift)

    def best_val_loss(self, steps: int | None = None, model: ModelShape | None = None) -> float:
        """The lowest val loss reachable at a fidelity (default: the target), nats."""
        steps = self.target.steps if steps is None else steps
        model = self.target.model if model is None else model
        self.best_lr(steps, model)
        return self._slice(steps, model).best[1]

    def regret(self, lr: float) -> float:
        """Target val loss at ``lr`` minus the best; a diverged answer counts as
        ln(50257) - best (nats)."""
        best = self.best_val_loss()
        loss = self.val_loss(lr, self.target.steps, self.target.model)
        if not math.isfinite(loss):
            return INIT_LOSS - best
        return max(loss - best, 0.0)

    # --- cost -----------------------------------------------------------------------------
    @property
    def price_per_hour(self) -> float:
        """Dollars per hour of the simulated GPU ($1.50, the course's rounded g5.xlarge price)."""
        return self.gpu.price_per_hour

    def step_seconds(self, model: ModelShape, micro_batch: int = 32) -> float:
        """Simulated A10G seconds per optimizer step (524288 tokens)."""
        return self.gpu.step_seconds(_as_model(model), micro_batch)

    def run_seconds(
        self,
        steps: int,
        model: ModelShape,
        val_every: int | None = None,
        hellaswag: bool = False,
        **options: int,
    ) -> float:
        """Simulated wall seconds of a whole run including startup, step 0 and evals
        (``val_every`` None: val only at step 0 and at the end). ``options``: micro_batch,
        val_batches, sample_every, checkpoint_every, stop_at (see SimulatedA10G.run_seconds)."""
        return self.gpu.run_seconds(steps, _as_model(model), val_every, hellaswag, **options)

    def run_dollars(self, steps: int, model: ModelShape, **options: object) -> float:
        """``run_seconds`` at the GPU's price per hour."""
        return self.gpu.dollars(self.run_seconds(steps, model, **options))

    # --- curves ---------------------------------------------------------------------------
    def loss_curve(
        self,
        lr: float,
        steps: int,
        model: ModelShape,
        *,
        warmup: int | None = None,
        schedule: str = "cosine",
        final_lr_frac: float = 0.0,
        stop_at: int | None = None,
        val_every: int | None = None,
    ) -> tuple[list[float], dict[int, float]]:
        """Train loss per optimizer step and val loss at eval steps of one simulated run.

        ``train_losses[i]`` is the loss llm.c prints at step ``i + 1`` (the model after ``i``
        updates); ``val_losses[k]`` is the val loss after ``k`` updates, at step 0, every
        ``val_every`` steps and at the end (``stop_at``, llm.c's ``-es``, else ``steps``).
        Without ``stop_at`` the curve ends at ``val_loss(lr, steps, model)``; a diverged run
        ends at NaN or, for some runs, on a plateau of 5-11 nats. ``warmup`` defaults to 10%
        of ``steps``. The schedule shapes the curve, not the final loss (which assumes the
        standard cosine-to-zero recipe).
        """
        from costbo.sim.curve import simulate_run

        return simulate_run(
            self,
            lr,
            steps,
            _as_model(model),
            warmup=int(0.1 * steps) if warmup is None else warmup,
            schedule=schedule,
            final_lr_frac=final_lr_frac,
            stop_at=steps if stop_at is None else stop_at,
            val_every=val_every,
        ).as_lists()

    def val_loss_at(self, lr: float, steps: int, model: ModelShape, step: int) -> float:
        """Val loss after ``step`` updates of a run scheduled for ``steps`` (llm.c's ``-es``)."""
        _, val = self.loss_curve(lr, steps, model, stop_at=step)
        return val[step]

    def describe(self) -> dict:
        """Family, seed, drawn constants and GPU constants, for benchmark records."""
        return {
            "family": self.family,
            "seed": self.seed,
            "params": self.params.to_dict(),
            "gpu": self.gpu.to_dict(),
            "target": [self.target.steps, list(self.target.model.as_tuple())],
        }


def _draw_params(family: str, seed: int) -> tuple[LandscapeParams, SimulatedA10G]:
    # Base draws depend on the seed only, so the families of one seed differ in one respect.
    rng = np.random.default_rng([seed, 0x11C])

    def uniform(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    values: dict[str, float] = {
        "best_lr": math.exp(uniform(*np.log(PUBLISHED_BEST_LR))),
        "target_loss": uniform(3.4, 3.6),
        "irreducible_loss": uniform(1.7, 2.0),
        "params_exponent": uniform(0.28, 0.38),
        "tokens_exponent": uniform(0.25, 0.36),
        "embedding_weight": uniform(0.15, 0.3),
        "params_share": uniform(0.4, 0.6),
        "width_slope": uniform(0.33, 1.0),
        "depth_slope": uniform(0.0, 0.15),
        "steps_slope": uniform(0.0, 0.1),
        "short_run_boost": uniform(0.0, 0.3),
        "penalty_2x": uniform(0.008, 0.02),
        "ratio_4x": uniform(5.5, 9.0),
        "low_side_ratio": uniform(0.2, 0.45),
        "short_run_sharpening": uniform(0.15, 0.3),
        "penalty_100x_below": uniform(0.5, 1.3),
        "low_tail_power": uniform(3.8, 4.8),
        "low_tail_steps_shift": uniform(0.4, 0.8),
        "divergence_ratio": uniform(6.0, 8.0),
        "roughness": uniform(0.0015, 0.0025),
        "roughness_scale": uniform(0.3, 0.6),
    }
    gpu = SimulatedA10G.sample(rng)
    frng = np.random.default_rng([seed, FAMILIES.index(family), 0xFA3])

    def sign() -> float:
        return 1.0 if frng.random() < 0.5 else -1.0

    if family == "curved_drift":
        values["width_curvature"] = sign() * float(frng.uniform(0.08, 0.16))
        values["steps_curvature"] = sign() * float(frng.uniform(0.02, 0.05))
        values["width_steps_interaction"] = sign() * float(frng.uniform(0.02, 0.06))
    elif family == "no_drift":
        for name in ("width_slope", "depth_slope", "steps_slope", "short_run_boost"):
            values[name] = 0.0
    elif family == "narrow_basin":
        values["penalty_2x"] *= float(frng.uniform(3.0, 5.0))
        values["penalty_100x_below"] *= float(frng.uniform(1.5, 2.5))
    elif family == "early_divergence":
        values["divergence_ratio"] = float(frng.uniform(2.0, 3.0))
        values["divergence_width_slope"] = float(frng.uniform(0.05, 0.2))
    elif family == "bent_extrapolation":
        values["bend_slope_change"] = sign() * float(frng.uniform(0.8, 1.3))
        values["bend_width"] = float(frng.uniform(256.0, 384.0))
    return LandscapeParams(**values), gpu


def sample_landscape(
    family: str = "calibrated", seed: int = 0, *, target: Fidelity | None = None
) -> Landscape:
    """Draw landscape ``seed`` of ``family`` (one of ``FAMILIES``). Deterministic.

    ``target`` (default 4725 steps x GPT-2 124M) is what ``best_val_loss`` and ``regret`` refer
    to; the drawn best LR always belongs to the 124M/4725-step reference run.
    """
    if family not in FAMILIES:
        choices = ", ".join(FAMILIES)
        raise ValueError(f"unknown landscape family {family!r}; choose one of {choices}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed {seed!r} must be a non-negative integer")
    params, gpu = _draw_params(family, int(seed))
    return Landscape(params, family=family, seed=int(seed), gpu=gpu, target=target)
