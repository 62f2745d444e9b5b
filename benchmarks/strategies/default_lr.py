"""Baseline: llm.c's default max LR, 6e-4 (the GPT-3 table's value for 125M). Spends nothing."""

from __future__ import annotations

from benchmarks.strategies.oracle import DEFAULT_LR, Oracle


def default_lr(oracle: Oracle, seed: int) -> float:
    """Answer 6e-4 without running anything."""
    return oracle.answer(DEFAULT_LR)
