"""Offline training text for the twin, and ``prepare_data``: text files -> llm.c token shards.

The default corpus is English prose that ships with every CPython installation, so nothing is
downloaded: the documentation topics of ``pydoc_data.topics`` (the text behind ``help()``:
about 0.47 MB) followed by the docstrings of the standard library's own modules (about 1.6 MB),
in sorted module order. Both are under the PSF License; costbo bundles none of it, it reads the
installed copy (so the exact text, and the token counts, vary slightly by Python version).
"""

from __future__ import annotations

import inspect
import os
import re
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from costbo.llmc.shards import write_shard
from costbo.tokenizers import get_tokenizer

DEFAULT_VAL_FRACTION = 0.1
DEFAULT_SHARD_TOKENS = 100_000_000  # the size of llm.c's FineWeb shards
_SPLIT_SEGMENTS = 10  # val is taken from the end of each of this many equal stretches

# A docstring: a triple-quoted string opening a line right after a line ending in ':' (def,
# class), or at the top of a file after comments. A regex instead of ast.parse: ~10x faster over
# the whole stdlib (1 s instead of 8 s) and the few misses or extra strings are still English.
_DOCSTRING = re.compile(
    r'(?:\A(?:[ \t]*(?:#[^\n]*)?\n)*|:[ \t]*(?:#[^\n]*)?\n)[ \t]*[rRuU]?("""|\'\'\')(.*?)\1',
    re.S,
)
_SKIPPED_STDLIB_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test"}


def default_corpus() -> list[str]:
    """The default documents: pydoc topics, then stdlib module docstrings (one per module)."""
    from pydoc_data.topics import topics

    documents = [topics[key] for key in sorted(topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        if _SKIPPED_STDLIB_DIRS & set(path.relative_to(stdlib).parts):
            continue
        source = path.read_text(encoding="utf-8", errors="replace")
        docstrings = [inspect.cleandoc(m.group(2)) for m in _DOCSTRING.finditer(source)]
        text = "\n\n".join(d for d in docstrings if d)
        if text:
            documents.append(text)
    return documents


@dataclass(frozen=True)
class PreparedData:
    """Token shards written by :func:`prepare_data`, ready for train_gpt2cu or the twin."""

    out_dir: Path
    tokenizer: str
    train_paths: tuple[Path, ...]
    val_paths: tuple[Path, ...]
    train_tokens: int
    val_tokens: int
    vocab_size: int  # pass as the twin's -vs

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every shard written, train then val."""
        return self.train_paths + self.val_paths

    @property
    def train_pattern(self) -> str:
        """The ``-id`` glob matching the train shards."""
        return str(self.out_dir / f"{self.tokenizer}_train_*.bin")

    @property
    def val_pattern(self) -> str:
        """The ``-iv`` glob matching the val shards."""
        return str(self.out_dir / f"{self.tokenizer}_val_*.bin")


def prepare_data(
    out_dir: str | os.PathLike,
    text_paths: Sequence[str | os.PathLike] | None = None,
    tokenizer: str = "bytes",
    val_fraction: float = DEFAULT_VAL_FRACTION,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
) -> PreparedData:
    """Tokenize text into llm.c shards ``<out_dir>/<tokenizer>_{train,val}_NNNNNN.bin``.

    Each text file (UTF-8) is one document; without ``text_paths`` the default corpus (Python's
    own documentation, see the module docstring) is used. Every document starts with the
    tokenizer's separator (``<|endoftext|>`` = 50256 for ``gpt2``, byte 3 for ``bytes``). The
    token stream is cut into 10 equal stretches and the last ``val_fraction`` of each goes to
    val, so val samples the whole corpus. Each split is written in near-equal shards of at most
    ``shard_tokens`` tokens (llm.c needs at least B*T+1 tokens per shard: check
    ``train_tokens``/``val_tokens`` against your batch). Existing shards of the same tokenizer
    in ``out_dir`` are replaced. Raises FileNotFoundError (missing text file), ValueError (empty
    text, bad tokenizer, fraction or shard size) or PermissionError (``out_dir`` not writable).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(
            f"val_fraction {val_fraction!r} must be strictly between 0 and 1, e.g. 0.1"
        )
    if int(shard_tokens) != shard_tokens or shard_tokens < 2:
        raise ValueError(f"shard_tokens {shard_tokens!r} must be an integer >= 2, e.g. 100000000")
    encoder = get_tokenizer(tokenizer)
    out = Path(out_dir)
    _ensure_writable(out)
    documents = _read_documents(text_paths) if text_paths is not None else default_corpus()
    if text_paths is not None and not documents:
        raise ValueError(
            "text_paths is empty: give at least one text file, or None for the default"
        )

    stream = np.concatenate([encoder.encode_document(doc) for doc in documents])
    train, val = _split(stream, val_fraction)
    if val.size < 2 or train.size < 2:
        raise ValueError(
            f"{stream.size} tokens are too few to split with val_fraction {val_fraction}: "
            "give more text or change val_fraction"
        )
    for stale in [*out.glob(f"{tokenizer}_train_*.bin"), *out.glob(f"{tokenizer}_val_*.bin")]:
        stale.unlink()
    train_paths = _write_split(out, f"{tokenizer}_train", train, int(shard_tokens))
    val_paths = _write_split(out, f"{tokenizer}_val", val, int(shard_tokens))
    return PreparedData(
        out_dir=out,
        tokenizer=tokenizer,
        train_paths=train_paths,
        val_paths=val_paths,
        train_tokens=int(train.size),
        val_tokens=int(val.size),
        vocab_size=encoder.vocab_size,
    )


def _ensure_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise NotADirectoryError(f"output path {out} exists and is not a directory") from exc
    except PermissionError as exc:
        raise PermissionError(f"cannot create output directory {out}: permission denied") from exc
    if not out.is_dir():
        raise NotADirectoryError(f"output path {out} exists and is not a directory")
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(
            f"output directory {out} is not writable: choose another directory or fix its mode"
        )


def _read_documents(text_paths: Sequence[str | os.PathLike]) -> list[str]:
    if isinstance(text_paths, str | os.PathLike):
        text_paths = [text_paths]  # one path given bare: accept it rather than iterate its chars
    documents = []
    for raw in text_paths:
        path = Path(raw)
        if not path.is_file():
            raise FileNotFoundError(f"text file {path} does not exist (or is not a file)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"text file {path} is not UTF-8 ({exc.reason} at byte {exc.start}); convert it"
            ) from exc
        if not text.strip():
            raise ValueError(f"text file {path} is empty: give it some text or leave it out")
        documents.append(text)
    return documents


def _split(stream: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    train_parts, val_parts = [], []
    for segment in np.array_split(stream, _SPLIT_SEGMENTS):
        cut = segment.size - int(round(segment.size * val_fraction))
        train_parts.append(segment[:cut])
        val_parts.append(segment[cut:])
    return np.concatenate(train_parts), np.concatenate(val_parts)


def _write_split(out: Path, stem: str, tokens: np.ndarray, shard_tokens: int) -> tuple[Path, ...]:
    # near-equal shards, so the last one is never a tiny remainder below llm.c's B*T+1 minimum
    count = -(-tokens.size // shard_tokens)
    return tuple(
        write_shard(out / f"{stem}_{index:06d}.bin", part)
        for index, part in enumerate(np.array_split(tokens, count))
    )
