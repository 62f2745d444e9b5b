"""The search space: max-LR bounds and the discrete fidelities (step rungs x model shapes).

A fidelity is a (steps, model) pair. The grid form takes every step rung with every width rung
and targets (last step rung, last width rung); the pairs form lists the allowed pairs and names
the target explicitly. Coordinates the surrogate sees are log10 LR and the natural logs of steps
and width relative to the target, so the full-scale corner sits at (s, w) = (0, 0).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from costbo.gpt2 import ModelShape


@dataclass(frozen=True, order=True)
class Fidelity:
    """One (steps, model) rung pair: ``steps`` is llm.c's ``-x``, ``model`` its ``-1d -1c -1h``."""

    steps: int
    model: ModelShape

    @property
    def width(self) -> int:
        return self.model.channels

    def __str__(self) -> str:
        return f"{self.steps} steps x {self.model}"


def _is_whole(value: object) -> bool:
    # numpy integers count: rungs and shapes often come out of np.arange or a DataFrame
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_model(value: object, where: str) -> ModelShape:
    """A model given as a width (depth = heads = width // 64), a (depth, channels, heads)
    triple or a ModelShape, as a ModelShape; ``where`` names the argument in errors."""
    if isinstance(value, ModelShape):
        return value
    if _is_whole(value):
        return ModelShape.from_width(int(value))
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3:
        depth, channels, heads = (int(v) if _is_whole(v) else v for v in value)
        try:
            return ModelShape(depth, channels, heads)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    raise ValueError(
        f"{where}: {value!r} is not a model; give a width (int) or a (depth, channels, heads) tuple"
    )


def _check_rungs(name: str, values: Iterable[object]) -> list[int]:
    values = list(values)
    if not values:
        raise ValueError(f"{name} rungs are empty: give at least one, e.g. {name}=[100, 4725]")
    for v in values:
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} rung {v!r} is not a positive integer: use whole numbers > 0")
    values = [int(v) for v in values]
    for a, b in zip(values, values[1:], strict=False):
        if a == b:
            raise ValueError(f"{name} rung {a} appears twice: list each rung once")
        if b < a:
            raise ValueError(
                f"{name} rungs {values} are not sorted ({a} before {b}): list them in increasing "
                "order, the target last"
            )
    return values


class SearchSpace:
    """Max-LR bounds (searched in log10 space) and the fidelities costbo may run.

    Grid form: ``SearchSpace(lr=(1e-5, 1e-1), steps=[...], widths=[...])`` or
    ``models=[(depth, channels, heads), ...]`` instead of widths. Pairs form:
    ``SearchSpace(lr=..., pairs=[(steps, (d, c, h)), ...], target=(steps, (d, c, h)))``.
    """

    def __init__(
        self,
        lr: tuple[float, float] = (1e-5, 1e-1),
        steps: Sequence[int] | None = None,
        widths: Sequence[int] | None = None,
        *,
        models: Sequence[object] | None = None,
        pairs: Sequence[tuple[int, object]] | None = None,
        target: tuple[int, object] | None = None,
    ) -> None:
        try:
            lo, hi = (float(v) for v in lr)
        except (TypeError, ValueError):
            raise ValueError(f"lr bounds {lr!r} must be two numbers (low, high)") from None
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or hi <= 0:
            raise ValueError(
                f"lr bounds ({lo:g}, {hi:g}) must be positive finite numbers, e.g. lr=(1e-5, 1e-1)"
            )
        if lo >= hi:
            raise ValueError(
                f"lr bounds ({lo:g}, {hi:g}) are reversed or empty: give (low, high), low < high"
            )
        self.lr_bounds = (lo, hi)

        if pairs is not None:
            if steps is not None or widths is not None or models is not None:
                raise ValueError("give either pairs= (with target=) or steps= with widths=/models=")
            pairs = list(pairs)  # a numpy array has no truth value
            if not pairs:
                raise ValueError("pairs are empty: list at least one (steps, model) pair")
            if target is None:
                raise ValueError(
                    "pairs= needs target=(steps, (depth, channels, heads)): the full-scale run"
                )
            if not (isinstance(target, Sequence) and not isinstance(target, str)) or (
                len(target) != 2
            ):
                raise ValueError(
                    f"target={target!r} must be (steps, model), e.g. target=(4725, (12, 768, 12))"
                )
            fids = []
            for i, pair in enumerate(pairs):
                if not (isinstance(pair, Sequence) and len(pair) == 2):
                    raise ValueError(f"pairs[{i}] = {pair!r} must be (steps, model)")
                (s,) = _check_rungs("steps", [pair[0]])
                fids.append(Fidelity(s, as_model(pair[1], f"pairs[{i}]")))
            (t_steps,) = _check_rungs("target steps", [target[0]])
            tgt = Fidelity(t_steps, as_model(target[1], "target"))
            seen = set()
            for f in fids:
                if f in seen:
                    raise ValueError(f"pair ({f}) appears twice: list each pair once")
                seen.add(f)
            if tgt not in seen:
                fids.append(tgt)
            # The model tells fidelities apart by (steps, width) alone (as on the grid, where
            # models must differ in channels): two shapes at the same point would be taken for
            # one another, e.g. a shallower full-length run for the target itself.
            by_point: dict[tuple[int, int], Fidelity] = {}
            for f in fids:
                other = by_point.setdefault((f.steps, f.width), f)
                if other != f:
                    raise ValueError(
                        f"pairs ({other}) and ({f}) have the same steps and width, which is all "
                        "costbo's model tells fidelities apart by: keep one of them"
                    )
            for f in fids:
                if f.steps > tgt.steps or f.width > tgt.width:
                    raise ValueError(
                        f"pair ({f}) is larger than the target ({tgt}): the target must be the "
                        "largest run in steps and width"
                    )
            self.fidelities = sorted(fids, key=lambda f: (f.steps, f.width, f.model))
            self.target = tgt
            self.form = "pairs"
        else:
            if target is not None:
                raise ValueError("target= is only for the pairs form; on a grid the last rungs are")
            if steps is None:
                raise ValueError("steps rungs are missing: give steps=[...], the target last")
            step_rungs = _check_rungs("steps", steps)
            if models is not None and widths is not None:
                raise ValueError("give widths= or models=, not both")
            if models is not None:
                shapes = [as_model(m, f"models[{i}]") for i, m in enumerate(models)]
                if not shapes:
                    raise ValueError("models are empty: give at least one (depth, channels, heads)")
                _check_rungs("model channels", [m.channels for m in shapes])
            else:
                if widths is None:
                    raise ValueError("width rungs are missing: give widths=[...] or models=[...]")
                shapes = [as_model(w, "widths") for w in _check_rungs("width", widths)]
            self.fidelities = [Fidelity(s, m) for s in step_rungs for m in shapes]
            self.target = Fidelity(step_rungs[-1], shapes[-1])
            self.form = "grid"

    # --- coordinates -----------------------------------------------------------------------
    @property
    def log10_lr_bounds(self) -> tuple[float, float]:
        return (math.log10(self.lr_bounds[0]), math.log10(self.lr_bounds[1]))

    def fidelity_coordinates(self, fidelity: Fidelity) -> tuple[float, float]:
        """(s, w) = (ln(steps / target steps), ln(width / target width)); 0 at the target."""
        return (
            math.log(fidelity.steps / self.target.steps),
            math.log(fidelity.width / self.target.width),
        )

    def find(self, steps: int, model: object) -> Fidelity:
        """The fidelity with these steps and model (width or shape), or a clear error."""
        if not _is_whole(steps) or steps <= 0:
            raise ValueError(f"steps {steps!r} is not a positive integer: give a step rung")
        steps = int(steps)
        if _is_whole(model):
            # a width names the space's own shape of that width, which need not be the
            # default head-size-64 ladder (models= and pairs= give explicit shapes)
            for f in self.fidelities:
                if f.steps == steps and f.width == model:
                    return f
            shown = f"{steps} steps x width {model}"
        else:
            fid = Fidelity(steps, as_model(model, "model"))
            if fid in self.fidelities:
                return fid
            shown = str(fid)
        raise ValueError(
            f"({shown}) is not in the search space; allowed: "
            + ", ".join(str(f) for f in self.fidelities[:8])
            + (" ..." if len(self.fidelities) > 8 else "")
        )

    def contains_lr(self, lr: float) -> bool:
        lo, hi = self.lr_bounds
        return lo * (1 - 1e-12) <= lr <= hi * (1 + 1e-12)

    # --- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "lr": list(self.lr_bounds),
            "pairs": [[f.steps, list(f.model.as_tuple())] for f in self.fidelities],
            "target": [self.target.steps, list(self.target.model.as_tuple())],
            "form": self.form,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SearchSpace:
        space = cls(
            lr=tuple(data["lr"]),
            pairs=[(s, tuple(m)) for s, m in data["pairs"]],
            target=(data["target"][0], tuple(data["target"][1])),
        )
        space.form = data.get("form", "pairs")
        return space

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        lo, hi = self.lr_bounds
        return (
            f"SearchSpace(lr=({lo:g}, {hi:g}), {len(self.fidelities)} fidelities, "
            f"target={self.target})"
        )
