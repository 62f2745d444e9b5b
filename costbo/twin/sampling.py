"""Text generation as train_gpt2cu prints it (``-s``, ``-g``), and its tokenizer file (``-it``).

llm.c samples ``genT - 1`` tokens after an end-of-text token, drawing each coin from an xorshift
generator seeded 1337 at every generation, and prints the decoded tokens between
``generating:\\n---\\n`` and ``\\n---\\n`` (token ids followed by a space when the tokenizer file
is missing). Runners skip this text; the twin prints it so that its stdout has the same shape.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

TOKENIZER_MAGIC = 20240328
_MASK64 = (1 << 64) - 1


class TokenizerFileError(Exception):
    """A tokenizer file llm.c rejects; ``abort`` is True where llm.c asserts rather than exits."""

    def __init__(self, message: str, abort: bool) -> None:
        super().__init__(message)
        self.abort = abort


def read_tokenizer_file(path: str) -> tuple[list[bytes], int] | None:
    """llm.c's tokenizer file: (token byte strings, eot id), or None when it cannot be opened."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if len(data) < 1024:
        raise TokenizerFileError(f"Error: Unexpected end of file reading {path}", abort=False)
    header = np.frombuffer(data[:1024], dtype="<u4")
    if header[0] != TOKENIZER_MAGIC:
        raise TokenizerFileError("Assertion `header[0] == 20240328' failed.", abort=True)
    version, vocab_size = int(header[1]), int(header[2])
    if version == 1:
        if vocab_size != 50257:
            raise TokenizerFileError("Assertion `tokenizer->vocab_size == 50257' failed.", True)
        eot = 50256
    elif version == 2:
        eot = int(header[3])
    else:
        raise TokenizerFileError(f"Tokenizer model file {path} has bad version: {version}", False)
    table, offset = [], 1024
    for _ in range(vocab_size):
        if offset >= len(data) or data[offset] == 0 or offset + 1 + data[offset] > len(data):
            raise TokenizerFileError(f"Error: Unexpected end of file reading {path}", False)
        table.append(data[offset + 1 : offset + 1 + data[offset]])
        offset += 1 + data[offset]
    return table, eot


def _random_f32(state: list[int]) -> float:
    """llm.c's sampler.h xorshift* generator: a float in [0, 1); ``state`` is updated in place."""
    s = state[0]
    s ^= s >> 12
    s ^= (s << 25) & _MASK64
    s ^= s >> 27
    state[0] = s
    u32 = ((s * 0x2545F4914F6CDD1D) & _MASK64) >> 32
    return (u32 >> 8) / 16777216.0


def _printable(piece: bytes) -> bytes:
    # llm.c's safe_printf: a lone byte that is neither printable nor whitespace is skipped
    if len(piece) == 1 and not (0x20 <= piece[0] < 0x7F or piece[0] in b" \t\n\v\f\r"):
        return b""
    return piece


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    eot: int,
    gen_tokens: int,
    max_len: int,
    table: list[bytes] | None,
) -> None:
    """Sample ``gen_tokens - 1`` tokens after ``eot`` and print them as llm.c does."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = sys.stdout
    out.write("generating:\n---\n")
    out.flush()
    tokens = [eot]
    state = [1337]
    for _ in range(1, min(gen_tokens, max_len + 1)):
        idx = torch.tensor([tokens[-max_len:]], device=device)
        last = model.hidden(idx)[0, -1]
        logits = (model.wte.weight[: model.vocab_size] @ last).double()
        probs = torch.softmax(logits, dim=0).cpu().numpy()
        coin = _random_f32(state)
        choice = int(np.searchsorted(np.cumsum(probs), coin, side="right"))
        token = min(choice, probs.size - 1)
        tokens.append(token)
        if table is None:
            out.write(f"{token} ")
        elif token < len(table):
            _write_bytes(out, _printable(table[token]))
        else:
            out.write(f"invalid token id {token}!\n")
        out.flush()
    out.write("\n---\n")
    out.flush()
    model.train(was_training)


def _write_bytes(stream, piece: bytes) -> None:
    # tokens are raw bytes (a UTF-8 character may span two tokens): bypass the text layer
    if hasattr(stream, "buffer"):
        stream.flush()
        stream.buffer.write(piece)
        stream.buffer.flush()
    else:
        stream.write(piece.decode("utf-8", errors="replace"))
