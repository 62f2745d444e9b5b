"""llm.c token shards: the byte layout train_gpt2cu reads, and its refusals."""

from __future__ import annotations

import os

import numpy as np
import pytest

from costbo.llmc.shards import (
    HEADER_BYTES,
    SHARD_MAGIC,
    ShardError,
    glob_shards,
    read_shard,
    read_shard_header,
    write_shard,
)


def _raw_shard(path, magic=SHARD_MAGIC, version=1, count=10, tokens=None):
    header = np.zeros(256, dtype="<i4")
    header[:3] = magic, version, count
    body = np.arange(count if tokens is None else tokens, dtype="<u2").tobytes()
    path.write_bytes(header.tobytes() + body)
    return path


def test_shard_round_trips_with_llmc_header_and_size(tmp_path):
    tokens = np.array([50256, 15496, 995, 0, 50255], dtype=np.int64)
    path = write_shard(tmp_path / "x_train_000000.bin", tokens)
    raw = path.read_bytes()
    assert len(raw) == HEADER_BYTES + 2 * tokens.size
    header = np.frombuffer(raw[:HEADER_BYTES], dtype="<i4")
    assert header[:3].tolist() == [20240520, 1, 5]
    assert not header[3:].any()
    assert np.frombuffer(raw[HEADER_BYTES:], dtype="<u2").tolist() == tokens.tolist()
    assert read_shard(path).tolist() == tokens.tolist()
    assert read_shard_header(path) == 5


def test_write_accepts_byte_tokens_and_plain_lists(tmp_path):
    path = write_shard(tmp_path / "b.bin", [3, 72, 105, 255])
    assert read_shard(path).tolist() == [3, 72, 105, 255]


@pytest.mark.parametrize(
    "tokens, complaint",
    [([1, 50257], "50257"), ([-1, 4], "-1"), ([], "no tokens"), ([[1, 2]], "one-dimensional")],
)
def test_write_refuses_tokens_llmc_cannot_read(tmp_path, tokens, complaint):
    with pytest.raises(ValueError, match=complaint):
        write_shard(tmp_path / "bad.bin", np.array(tokens, dtype=np.int64))
    assert not (tmp_path / "bad.bin").exists()


def test_bad_magic_carries_llmc_message(tmp_path):
    path = _raw_shard(tmp_path / "m.bin", magic=12345)
    with pytest.raises(ShardError, match="bad magic 12345") as info:
        read_shard(path)
    assert info.value.llmc_text.startswith("Bad magic in the data file\n")


def test_wrong_version_is_refused(tmp_path):
    path = _raw_shard(tmp_path / "v.bin", version=2)
    with pytest.raises(ShardError, match="version 2") as info:
        read_shard(path)
    assert info.value.llmc_text == "Bad version in data file\n"


@pytest.mark.parametrize("actual_tokens", [9, 11])
def test_size_not_matching_the_header_count_is_refused(tmp_path, actual_tokens):
    path = _raw_shard(tmp_path / "t.bin", count=10, tokens=actual_tokens)
    with pytest.raises(ShardError, match="declares 10 tokens") as info:
        read_shard(path)
    assert info.value.llmc_text == "Error: file size is not as expected\n"


def test_file_shorter_than_header_is_truncated(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ShardError, match="truncated: 100 bytes"):
        read_shard_header(path)


def test_zero_token_count_is_refused(tmp_path):
    path = _raw_shard(tmp_path / "z.bin", count=0)
    with pytest.raises(ShardError, match="declares 0 tokens"):
        read_shard_header(path)


def test_missing_shard_is_a_shard_error(tmp_path):
    with pytest.raises(ShardError, match="cannot open"):
        read_shard_header(tmp_path / "absent.bin")


def test_glob_is_sorted_and_relative_to_cwd(tmp_path, monkeypatch):
    for name in ("d_train_000002.bin", "d_train_000000.bin", "d_train_000001.bin"):
        write_shard(tmp_path / name, [1, 2, 3])
    monkeypatch.chdir(tmp_path)
    assert glob_shards("d_train_*.bin") == [f"d_train_00000{i}.bin" for i in range(3)]


def test_glob_matching_nothing_fails_like_llmc(tmp_path):
    pattern = os.path.join(tmp_path, "nothing_*.bin")
    with pytest.raises(ShardError, match="no token shards match") as info:
        glob_shards(pattern)
    assert info.value.llmc_text == f"Error: failed to glob pattern: {pattern}\n"
