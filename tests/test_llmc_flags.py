"""llm.c's command line (costbo/llmc/flags.py): atoi/atof against the C library, the flag table."""

from __future__ import annotations

import ctypes
import math
import os
import struct
from dataclasses import fields

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from costbo.llmc.flags import (
    LLMC_FLAGS,
    Config,
    Flag,
    UsageError,
    atof,
    atoi,
    parse_argv,
    with_flags,
)
from costbo.sim.trainer import FLAGS as SIM_FLAGS
from costbo.sim.trainer import SimConfig
from costbo.twin.train import FLAGS as TWIN_FLAGS
from costbo.twin.train import TwinConfig

_libc = ctypes.CDLL(None)
_libc.atoi.restype = ctypes.c_int
_libc.atoi.argtypes = [ctypes.c_char_p]
_libc.strtod.restype = ctypes.c_double
_libc.strtod.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]


def c_atoi(raw: bytes) -> int:
    return _libc.atoi(raw)


def c_atof(raw: bytes) -> float:
    return _libc.strtod(raw, None)  # glibc's atof is strtod(nptr, NULL)


def same_double(ours: float, c: float) -> bool:
    """Bit for bit, except a NaN's payload (strtod keeps nan(123)'s; llm.c never looks at it)."""
    if math.isnan(ours) or math.isnan(c):
        return math.isnan(ours) and math.isnan(c) and math.copysign(1, ours) == math.copysign(1, c)
    return struct.pack("<d", ours) == struct.pack("<d", c)


# argv can hold any bytes but NUL; Python sees them decoded with surrogateescape
argv_bytes = st.binary(max_size=24).map(lambda b: b.replace(b"\0", b""))
# strings built from the pieces numbers are made of, so that most of them are near-numbers
number_like = st.lists(
    st.sampled_from(
        [" ", "\t", "\n", "+", "-", "0", "1", "7", "9", ".", "e", "E", "x", "X", "p", "P", "a",
         "F", "inf", "INFINITY", "nan", "NaN(", "_", ")", "9" * 25, "é", "\u0663", "\u0131"]
    ),
    max_size=10,
).map("".join)  # fmt: skip
formatted_floats = st.floats(allow_nan=False).flatmap(
    lambda x: st.sampled_from([repr(x), f"{x:e}", f"{x:.20g}", x.hex(), f" {x!r}junk"])
)
formatted_ints = st.integers(-(2**70), 2**70).flatmap(
    lambda n: st.sampled_from([str(n), f"  +{n}", f"{n}e3", f"{n:030d}", f"{n}.9"])
)


@settings(max_examples=500)
@given(st.one_of(argv_bytes, number_like.map(os.fsencode), formatted_ints.map(str.encode)))
@example(b"99999999999999999999999")  # saturates at LONG_MAX, then keeps the low 32 bits: -1
@example(b"4294967297")
@example(b"-" + b"9" * 5000)  # beyond Python's int() digit limit
def test_atoi_matches_the_c_library(raw):
    assert atoi(os.fsdecode(raw)) == c_atoi(raw)


@settings(max_examples=500)
@given(
    st.one_of(
        argv_bytes,
        number_like.map(os.fsencode),
        formatted_floats.map(str.encode),
        formatted_ints.map(str.encode),
    )
)
@example(b"0x1p99999")  # hex overflow: inf, where float.fromhex raises
@example(b"-0x")  # "-0" then stop: -0.0
@example(b"1e")
@example(b"nan(123)")
@example(b"-nan")
@example(b"\xc4\xb1nf")  # dotless i: not "inf" to C
@example(b"\xd9\xa3")  # an Arabic-Indic digit: not a digit to C
def test_atof_matches_the_c_library(raw):
    assert same_double(atof(os.fsdecode(raw)), c_atof(raw))


def test_loose_flags_match_on_their_first_letter_and_exact_ones_only_whole():
    config = parse_argv(["-bx", "8", "-t", "64", "-oz", "out", "-lg", "5", "-l", "1e-3"], Config())
    assert (config.B, config.T, config.output_log_dir) == (8, 64, "out")
    assert (config.log_gpu_every, config.learning_rate) == (5, 1e-3)
    for exact_only in ("-lx", "-nx", "-sx", "-1x", "-px", "-ix"):
        with pytest.raises(UsageError):
            parse_argv([exact_only, "1"], Config())


def test_the_first_matching_row_wins():
    config = parse_argv(["-es", "5", "-ge", "2", "-gx", "32"], Config())
    assert (config.early_stopping_steps, config.load_filename) == (5, None)
    assert (config.gelu_fusion, config.genT) == (2, 32)
    assert parse_argv(["-ex", "model.bin"], Config()).load_filename == "model.bin"
    assert parse_argv(["-1d", "2", "-1c", "64", "-1h", "1"], Config()).heads == 1


@pytest.mark.parametrize(
    "argv",
    [["-j", "1"], ["-b"], ["b", "1"], ["-", "1"], ["-bxy", "1"], ["-b\u00e9", "1"], ["--", "1"]],
)
def test_unknown_or_malformed_flags_are_usage_errors(argv):
    with pytest.raises(UsageError):
        parse_argv(argv, Config())


def test_values_are_not_validated():
    config = parse_argv(["-x", "1e3", "-b", "abc", "-l", "0x1p-10", "-c", "x"], Config())
    assert (config.max_steps, config.B, config.learning_rate, config.weight_decay) == (
        1,
        0,
        2**-10,
        0.0,
    )


def test_every_row_sets_a_config_field_and_none_is_shadowed():
    assert with_flags((), before="-id") == LLMC_FLAGS  # checks that every row can match
    names = {f.name for f in fields(Config)}
    assert {flag.field for flag in LLMC_FLAGS} <= names
    assert len({flag.spelling for flag in LLMC_FLAGS}) == len(LLMC_FLAGS)


def test_an_own_flag_after_the_llmc_row_that_takes_it_is_refused():
    with pytest.raises(ValueError, match="-vs would be read as -v"):
        with_flags([Flag("-vs", "vocab_size", atoi, False, "vocabulary")], before="-m")


def test_each_program_adds_its_own_flags_and_keeps_llmcs():
    twin = parse_argv(["-vs", "256", "-v", "9", "-zf", "1"], TwinConfig(), TWIN_FLAGS)
    assert (twin.vocab_size, twin.val_loss_every, twin.zero_stage) == (256, 9, 1)
    sim = parse_argv(["-zf", "flat", "-zs", "3", "-zt", "0.5", "-z", "0"], SimConfig(), SIM_FLAGS)
    assert (sim.family, sim.seed, sim.sleep_factor, sim.zero_stage) == ("flat", 3, 0.5, 0)
    assert parse_argv(["-vs", "256"], SimConfig(), SIM_FLAGS).val_loss_every == 256  # as llm.c
