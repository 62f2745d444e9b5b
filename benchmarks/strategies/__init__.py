"""Tuning strategies compared by ``benchmarks/run.py``: each is ``strategy(oracle, seed) -> lr``
(see ``oracle.py`` for the protocol). ``STRATEGIES`` maps the benchmark's method names to them;
peers that need optional packages (Optuna) are imported only when they run."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from benchmarks.strategies.oracle import Oracle

# method name -> (module, function); modules import lazily (BoTorch, Optuna, costbo's Study)
_REGISTRY: dict[str, tuple[str, str]] = {
    "default_6e-4": ("default_lr", "default_lr"),
    "literature_law": ("literature_law", "literature_law"),
    "greedy_doubling": ("greedy_doubling", "greedy_doubling"),
    "early_stopping": ("early_stopping", "early_stopping"),
    "early_stopping_short": ("early_stopping", "early_stopping_short"),
    "model_scaling": ("model_scaling", "model_scaling"),
    "data_scaling": ("data_scaling", "data_scaling"),
    "hyperband": ("hyperband", "hyperband"),
    "optuna_tpe_hyperband": ("optuna_tpe", "optuna_tpe"),
    "qmfkg": ("qmfkg", "qmfkg"),
    "costbo": ("costbo_study", "costbo_default"),
    "costbo_ei": ("costbo_study", "costbo_ei"),
    "costbo_kg": ("costbo_study", "costbo_kg"),
    "costbo_wide_drift": ("costbo_study", "costbo_wide_drift"),
}
# what --quick runs instead of a method (same algorithm, tiny optimizer settings)
QUICK_VARIANTS = {
    "qmfkg": ("qmfkg", "qmfkg_quick"),
    "costbo": ("costbo_study", "costbo_quick"),
    "costbo_ei": ("costbo_study", "costbo_ei_quick"),
    "costbo_kg": ("costbo_study", "costbo_kg_quick"),
}
METHODS = tuple(_REGISTRY)
BASELINES = METHODS[:8]
PEERS = ("optuna_tpe_hyperband", "qmfkg")
COSTBO_VARIANTS = {"costbo_ei": "ei_per_dollar", "costbo_kg": "kg_per_dollar"}

Strategy = Callable[[Oracle, int], float]


def default_methods() -> list[str]:
    """Every method once: baselines, peers, costbo with its defaults, and the costbo variant
    whose acquisition is not the default (the other one would repeat ``costbo``)."""
    import inspect

    from costbo.study import Study

    default = inspect.signature(Study).parameters["acquisition"].default
    variants = [name for name, acq in COSTBO_VARIANTS.items() if acq != default]
    return [*BASELINES, *PEERS, "costbo", *variants]


def get_strategy(name: str, quick: bool = False) -> Strategy:
    """The strategy function registered as ``name`` (its quick variant with ``quick``)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    module, function = (QUICK_VARIANTS.get(name) if quick else None) or _REGISTRY[name]
    return getattr(import_module(f"benchmarks.strategies.{module}"), function)


__all__ = ["BASELINES", "METHODS", "PEERS", "Strategy", "default_methods", "get_strategy"]
