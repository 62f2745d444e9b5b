"""Baseline: a literature law evaluated at the target, no runs.

Judgment call: the geometric mean of the three published laws in ``costbo.priors`` at GPT-2
124M and 4725 x 524,288 tokens: the GPT-3 table (6e-4), DeepSeek LLM (eta = 0.3118 C^-0.125,
~1.7e-3) and Step Law (eta = 1.79 N^-0.713 D^0.307, ~3e-3), i.e. ~1.45e-3. This is also the
centre of costbo's default prior, and the simulator draws each landscape's best LR log-uniformly
over 6e-4 .. 3e-3, so this baseline sits at the centre of the simulated world's range: it is
strong here by construction, and would be weaker wherever the laws are biased.
"""

from __future__ import annotations

import math

from benchmarks.strategies.oracle import TARGET_MODEL, TARGET_STEPS, Oracle
from costbo.gpt2 import MAX_SEQ_LEN, TOKENS_PER_STEP
from costbo.priors import deepseek_lr, gpt3_table_lr, step_law_lr


def literature_lr() -> float:
    """Geometric mean of the GPT-3 table, DeepSeek and Step Law LRs at the target (max LR)."""
    tokens = float(TARGET_STEPS) * TOKENS_PER_STEP
    laws = [
        gpt3_table_lr(TARGET_MODEL),
        deepseek_lr(TARGET_MODEL, tokens, MAX_SEQ_LEN),
        step_law_lr(TARGET_MODEL, tokens),
    ]
    return math.exp(sum(math.log(v) for v in laws) / len(laws))


def literature_law(oracle: Oracle, seed: int) -> float:
    """Answer the laws' geometric mean without running anything."""
    return oracle.answer(literature_lr())
