"""GPT-2 shape arithmetic as llm.c computes it: parameter count, FLOPs per token, shape rules.

Shared by the cost model (FLOPs prior), the llm.c command builder (shape checks before launch)
and the CPU twin (which must report the same ``num_parameters`` as train_gpt2cu).
"""

from __future__ import annotations

from dataclasses import dataclass

VOCAB_SIZE = 50257
PADDED_VOCAB_SIZE = 50304
MAX_SEQ_LEN = 1024
TOKENS_PER_STEP = 524_288  # llm.c's default total batch (-d), kept fixed by costbo
TARGET_STEPS = 4725


@dataclass(frozen=True, order=True)
class ModelShape:
    """A GPT-2 model shape as llm.c's ``-1d -1c -1h`` flags give it (depth, channels, heads)."""

    depth: int
    channels: int
    heads: int

    def __post_init__(self) -> None:
        problem = shape_problem(self.depth, self.channels, self.heads)
        if problem:
            raise ValueError(problem)

    @classmethod
    def from_width(cls, width: int) -> ModelShape:
        """The default ladder: depth = heads = width // 64 (head size 64, as GPT-2 124M)."""
        width = int(width)
        if width < 64:
            raise ValueError(
                f"width {width} gives depth = heads = {width} // 64 = 0: widths below 64 need an "
                f"explicit shape, e.g. models=[(1, {width}, 1)]"
            )
        return cls(width // 64, width, width // 64)

    @property
    def width(self) -> int:
        return self.channels

    @property
    def head_size(self) -> int:
        return self.channels // self.heads

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.depth, self.channels, self.heads)

    def num_parameters(self) -> int:
        return num_parameters(self.depth, self.channels)

    def flops_per_token(self, seq_len: int = MAX_SEQ_LEN) -> float:
        return flops_per_token(self.depth, self.channels, seq_len)

    def __str__(self) -> str:
        return f"d{self.depth}c{self.channels}h{self.heads}"


def shape_problem(depth: int, channels: int, heads: int) -> str | None:
    """Why llm.c would crash or misbehave with this shape, or None if it is fine.

    llm.c checks none of this itself: channels divisible by heads, a head size that is a multiple
    of 8 and at most 128 (cuDNN attention), channels a multiple of 8.
    """
    for name, value in (("depth", depth), ("channels", channels), ("heads", heads)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return f"model {name} {value!r} must be a positive integer"
    shape = f"(depth {depth}, channels {channels}, heads {heads})"
    if channels % heads:
        return (
            f"model {shape}: channels {channels} is not divisible by heads {heads}; "
            f"choose heads that divide channels, e.g. heads = {max(1, channels // 64)}"
        )
    head_size = channels // heads
    if head_size % 8:
        return (
            f"model {shape}: head size {channels}/{heads} = {head_size} is not a multiple of 8 "
            "(llm.c's attention needs it); change heads or channels"
        )
    if head_size > 128:
        return (
            f"model {shape}: head size {channels}/{heads} = {head_size} exceeds 128 (cuDNN's "
            f"limit); use at least {-(-channels // 128)} heads"
        )
    return None


def num_parameters(depth: int, channels: int) -> int:
    """llm.c's parameter count: (Vp + maxT) C + L (12 C^2 + 13 C) + 2 C (tied LM head)."""
    c = channels
    return (PADDED_VOCAB_SIZE + MAX_SEQ_LEN) * c + depth * (12 * c * c + 13 * c) + 2 * c


def flops_per_token(depth: int, channels: int, seq_len: int = MAX_SEQ_LEN) -> float:
    """Training FLOPs per token as llm.c counts them for MFU: 6 N + 6 L C T."""
    return 6.0 * num_parameters(depth, channels) + 6.0 * depth * channels * seq_len
