"""llm.c's DataLoader for the twin: the same shards, checks, batches and shuffle order.

train_gpt2cu globs its shards, validates them all at start-up, and serves batches of B*T+1
consecutive tokens (inputs, and targets shifted by one) at offsets that are multiples of B*T.
The train loader shuffles, with an mt19937 seeded 42: the shard order every epoch and the sample
order inside every shard it opens (a Fisher-Yates permutation drawing ``randint32 % (i+1)``). The
val loader reads its samples in order and restarts at each evaluation. Python's ``random`` is
the same mt19937, so seeding its state the way llm.c's ``manual_seed`` does reproduces llm.c's
shuffle draw for draw: the twin trains on the same batches in the same order.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from costbo.llmc.shards import ShardError, glob_shards, read_shard

_MT_N = 624


def llmc_rng(seed: int) -> random.Random:
    """An mt19937 seeded like llm.c's ``manual_seed`` (and torch's), not like ``random.seed``."""
    state = [seed & 0xFFFFFFFF]
    for j in range(1, _MT_N):
        state.append((1812433253 * (state[-1] ^ (state[-1] >> 30)) + j) & 0xFFFFFFFF)
    rng = random.Random()
    rng.setstate((3, (*state, _MT_N), None))  # position N: the next draw regenerates the state
    return rng


def random_permutation(items: list[int], rng: random.Random) -> None:
    """llm.c's in-place Fisher-Yates shuffle."""
    for i in range(len(items) - 1, 0, -1):
        j = rng.getrandbits(32) % (i + 1)
        items[i], items[j] = items[j], items[i]


class TooFewTokens(Exception):
    """A shard shorter than B*T+1 tokens: llm.c's loader asserts (aborts) on it."""


class ShardLoader:
    """Batches of ``B x T`` token ids from the shards matching ``pattern``, like llm.c's loader.

    Raises :class:`ShardError` for a glob matching nothing, a malformed shard, or a token id at
    or above ``vocab_size``; :class:`TooFewTokens` for a shard with fewer than B*T+1 tokens.
    """

    def __init__(
        self,
        pattern: str,
        B: int,
        T: int,
        shuffle: bool,
        vocab_size: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.B, self.T, self.shuffle, self.device = B, T, shuffle, torch.device(device)
        self.paths = glob_shards(pattern)
        self.shards = []
        for path in self.paths:
            tokens = read_shard(path)
            if tokens.size < B * T + 1:
                raise TooFewTokens(
                    f"shard {path} holds {tokens.size} tokens, fewer than B*T+1 = {B * T + 1}: "
                    "lower -b or -t, or prepare bigger shards"
                )
            top = int(tokens.max())
            if top >= vocab_size:
                raise ShardError(
                    f"shard {path} holds token id {top}, not below the vocabulary size "
                    f"{vocab_size}: pass -vs 50257 for GPT-2 tokens (the default), -vs 256 for "
                    "byte-level shards, or re-tokenize the data",
                )
            self.shards.append(tokens)
        self.num_tokens = sum(int(s.size) for s in self.shards)
        if shuffle:
            self._rng = llmc_rng(42)
            self._shard_order = list(range(len(self.shards)))
        self.reset()

    def reset(self) -> None:
        """Back to the first shard (a new epoch: reshuffled when shuffling)."""
        if self.shuffle:
            random_permutation(self._shard_order, self._rng)
        self._open(0)

    def _open(self, position: int) -> None:
        self._position = position
        index = self._shard_order[position] if self.shuffle else position
        self._tokens = self.shards[index]
        # a sample is B*T+1 tokens at a multiple of B*T, so the last token is never an input
        self._num_samples = (self._tokens.size - 1) // (self.B * self.T)
        self._samples = list(range(self._num_samples))
        if self.shuffle:
            random_permutation(self._samples, self._rng)
        self._next_sample = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets, each ``B x T`` int64 on the loader's device."""
        if self._next_sample >= self._num_samples:
            if self._position == len(self.shards) - 1:
                self.reset()
            else:
                self._open(self._position + 1)
        start = self._samples[self._next_sample] * self.B * self.T
        self._next_sample += 1
        chunk = torch.from_numpy(self._tokens[start : start + self.B * self.T + 1].astype(np.int64))
        chunk = chunk.to(self.device, non_blocking=True)
        return chunk[:-1].view(self.B, self.T), chunk[1:].view(self.B, self.T)
