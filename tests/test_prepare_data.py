"""Offline data preparation: tokenizers that match GPT-2, the default corpus, shard layout."""

from __future__ import annotations

import os

import numpy as np
import pytest

from costbo.corpus import prepare_data
from costbo.llmc.shards import read_shard
from costbo.tokenizers import BYTES_EOT, GPT2_EOT, get_tokenizer


@pytest.mark.parametrize(
    "text, ids",
    [
        ("Hello world", [15496, 995]),
        ("hello", [31373]),
        (" the", [262]),
        ("Hi", [17250]),
        ("<|endoftext|>", [27, 91, 437, 1659, 5239, 91, 29]),  # literal text, not the special
    ],
)
def test_gpt2_tokenizer_ids_equal_gpt2s(text, ids):
    assert get_tokenizer("gpt2").encode(text).tolist() == ids


def test_gpt2_document_starts_with_endoftext_and_decodes_back():
    tokenizer = get_tokenizer("gpt2")
    ids = tokenizer.encode_document("Byte pair encoding, offline.")
    assert ids[0] == GPT2_EOT == 50256
    assert tokenizer.decode(ids[1:]) == "Byte pair encoding, offline."


def test_byte_tokenizer_uses_etx_as_separator_and_drops_it_from_text():
    ids = get_tokenizer("bytes").encode_document("a\x03é")
    assert ids.tolist() == [BYTES_EOT, 97, 0xC3, 0xA9]


def test_unknown_tokenizer_names_the_choices():
    with pytest.raises(ValueError, match="bytes, gpt2"):
        get_tokenizer("sentencepiece")


def test_prepare_data_default_corpus_writes_a_million_bytes_in_llmc_named_shards(tmp_path):
    data = prepare_data(tmp_path, val_fraction=0.1)
    assert data.train_tokens + data.val_tokens >= 1_000_000
    assert [p.name for p in data.paths] == ["bytes_train_000000.bin", "bytes_val_000000.bin"]
    assert data.vocab_size == 256
    assert abs(data.val_tokens / (data.train_tokens + data.val_tokens) - 0.1) < 0.001
    train = read_shard(data.train_paths[0])
    assert train[0] == BYTES_EOT and int(train.max()) < 256
    text = np.concatenate([train, read_shard(data.val_paths[0])]).astype(np.uint8).tobytes()
    assert b"Heap queue algorithm" in text  # heapq's docstring: the stdlib part is there
    assert b'The "with" statement' in text  # a pydoc topic
    assert data.train_pattern == os.path.join(tmp_path, "bytes_train_*.bin")


def test_prepare_data_gpt2_splits_into_near_equal_shards(tmp_path):
    text = tmp_path / "story.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 400)
    data = prepare_data(tmp_path / "out", [text], tokenizer="gpt2", shard_tokens=1000)
    sizes = [read_shard(p).size for p in data.train_paths]
    assert len(sizes) == -(-data.train_tokens // 1000) and max(sizes) - min(sizes) <= 1
    stream = np.concatenate([read_shard(p) for p in data.train_paths])
    assert stream[0] == GPT2_EOT and int(stream.max()) < 50257
    assert data.val_paths[0].name == "gpt2_val_000000.bin"


def test_prepare_data_replaces_stale_shards(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("some text to tokenize " * 300)
    prepare_data(tmp_path / "out", [text], shard_tokens=500)
    data = prepare_data(tmp_path / "out", [text])
    assert sorted(p.name for p in (tmp_path / "out").glob("bytes_*.bin")) == sorted(
        p.name for p in data.paths
    )


def test_missing_text_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        prepare_data(tmp_path / "out", [tmp_path / "nope.txt"])


def test_empty_text_file_is_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        prepare_data(tmp_path / "out", [empty])


def test_output_path_that_is_a_file_is_refused(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("hello " * 100)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        prepare_data(blocker, [text])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_output_dir_not_writable_is_refused(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("hello " * 100)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="not writable"):
        prepare_data(locked, [text])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_val_fraction_outside_zero_one_is_refused(tmp_path, fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        prepare_data(tmp_path, [tmp_path / "unused.txt"], val_fraction=fraction)
