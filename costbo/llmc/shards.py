"""llm.c token shards: write them, and read them back with the checks train_gpt2cu makes.

A shard is a 256-int32 little-endian header (``[0]`` magic 20240520, ``[1]`` version 1, ``[2]``
token count) followed by that many uint16 token ids; its size is exactly 1024 + 2 x count bytes.
train_gpt2cu globs its ``-id``/``-iv`` patterns, validates every shard at start-up and needs at
least B*T+1 tokens per shard. The messages llm.c prints for a bad shard are kept verbatim in
:attr:`ShardError.llmc_text`, so the CPU twin can fail exactly like the real trainer.
"""

from __future__ import annotations

import glob as _glob
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from costbo.gpt2 import VOCAB_SIZE

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_TOKEN_ID = 2**16 - 1  # uint16 storage


class ShardError(ValueError):
    """A token shard (or shard glob) that train_gpt2cu would refuse.

    ``str(error)`` says what is wrong with which file and how to fix it; ``llmc_text`` is what
    train_gpt2cu itself prints on stdout for the same problem (empty when it prints nothing).
    """

    def __init__(self, message: str, llmc_text: str = "") -> None:
        super().__init__(message)
        self.llmc_text = llmc_text


def write_shard(path: str | os.PathLike, tokens: Iterable[int] | np.ndarray) -> Path:
    """Write ``tokens`` (ids in [0, 50257)) as an llm.c shard at ``path``; returns the path.

    Byte-level token ids (< 256) are valid shards too. The file is written to a temporary name
    and renamed, so a reader never sees a half-written shard.
    """
    path = Path(path)
    array = np.asarray(tokens if isinstance(tokens, np.ndarray) else list(tokens))
    if array.ndim != 1:
        raise ValueError(f"shard tokens must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"shard {path}: no tokens to write; llm.c needs at least B*T+1 per shard")
    if array.size > np.iinfo(np.int32).max:
        raise ValueError(
            f"shard {path}: {array.size} tokens exceed the int32 header count; "
            "split them over several shards"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"shard {path}: token ids must be integers, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= VOCAB_SIZE:
        bad = low if low < 0 else high
        raise ValueError(
            f"shard {path}: token id {bad} is outside [0, {VOCAB_SIZE}) (GPT-2's vocabulary); "
            "llm.c shards hold GPT-2 or byte-level (< 256) ids"
        )
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, array.size
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as f:
        f.write(header.tobytes())
        f.write(array.astype("<u2").tobytes())
    os.replace(temporary, path)
    return path


def read_shard_header(path: str | os.PathLike) -> int:
    """Validate a shard's header and size as llm.c does; returns its token count.

    Raises :class:`ShardError` for a missing or unreadable file, a header shorter than 1024
    bytes, a bad magic or version, a non-positive count, or a size other than 1024 + 2 x count.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            header_bytes = f.read(HEADER_BYTES)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise ShardError(
            f"cannot open token shard {path}: {exc.strerror}; check the -id/-iv pattern",
            llmc_text="",
        ) from exc
    if len(header_bytes) < HEADER_BYTES:
        raise ShardError(
            f"Error: Unexpected end of file: token shard {path} is truncated: {size} bytes, "
            f"shorter than the {HEADER_BYTES}-byte header; regenerate it (costbo prepare-data)",
            llmc_text="",
        )
    header = np.frombuffer(header_bytes, dtype="<i4")
    if header[0] != SHARD_MAGIC:
        raise ShardError(
            f"token shard {path} has bad magic {int(header[0])} (expected {SHARD_MAGIC}): not an "
            "llm.c token shard; regenerate it (costbo prepare-data)",
            llmc_text=(
                "Bad magic in the data file\n"
                "---> HINT: Are you passing in a correct file?\n"
                "---> HINT: The data encoding may have changed, re-run data prepro or refer again "
                "to README.\n"
            ),
        )
    if header[1] != SHARD_VERSION:
        raise ShardError(
            f"token shard {path} has version {int(header[1])} (expected {SHARD_VERSION}); "
            "regenerate it (costbo prepare-data)",
            llmc_text="Bad version in data file\n",
        )
    count = int(header[2])
    if count <= 0:
        raise ShardError(
            f"token shard {path} declares {count} tokens; a shard needs at least B*T+1 tokens",
            llmc_text="",
        )
    expected = HEADER_BYTES + 2 * count
    if size != expected:
        raise ShardError(
            f"token shard {path} is {size} bytes but its header declares {count} tokens "
            f"({expected} bytes): the file is truncated or corrupt; regenerate it",
            llmc_text="Error: file size is not as expected\n",
        )
    return count


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """The token ids of a validated shard, as a read-only uint16 array mapped from the file."""
    count = read_shard_header(path)
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(count,))


def glob_shards(pattern: str) -> list[str]:
    """The files matching an llm.c shard pattern, sorted as glob(3) sorts them.

    Relative patterns resolve against the current working directory, as in train_gpt2cu.
    Raises :class:`ShardError` (llm.c's ``Error: failed to glob pattern``) when nothing matches.
    """
    matches = sorted(p for p in _glob.glob(pattern) if os.path.isfile(p))
    if not matches:
        raise ShardError(
            f"no token shards match {pattern!r} (relative to {os.getcwd()}); "
            "create them with costbo prepare-data or fix the -id/-iv pattern",
            llmc_text=f"Error: failed to glob pattern: {pattern}\n",
        )
    return matches
