"""train_gpt2cu command lines: the flags a trial becomes, and every check made before launch."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costbo.llmc.command import TrainerSettings, build_argv, format_float, resolve_binary
from costbo.trial import Trial

_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.atof.restype = ctypes.c_double
_libc.atof.argtypes = [ctypes.c_char_p]
_libc.atoi.restype = ctypes.c_int
_libc.atoi.argtypes = [ctypes.c_char_p]


def make_trial(lr=6e-4, steps=100, depth=2, width=128, heads=2) -> Trial:
    return Trial(1, lr, steps, depth, width, heads, 1.0, 0.1, 0.2)


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "train_gpt2cu"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def settings(binary: Path) -> TrainerSettings:
    return TrainerSettings(binary="train_gpt2cu", llmc_dir=binary.parent)


def flags_of(argv: list[str]) -> dict[str, str]:
    assert len(argv) % 2 == 1, "binary then flag/value pairs"
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert len(flags) == len(argv) // 2, "no flag repeated"
    return flags


def test_defaults_give_the_tuning_run_flags(settings, binary, tmp_path):
    argv = build_argv(make_trial(lr=6e-4, steps=100), settings, tmp_path / "runs" / "t1")
    assert argv[0] == str(binary)
    assert flags_of(argv) == {
        "-l": "0.0006",
        "-x": "100",
        "-u": "10",
        "-1d": "2",
        "-1c": "128",
        "-1h": "2",
        "-o": str(tmp_path / "runs" / "t1"),
        "-n": "0",
        "-s": "0",
        "-v": "100",  # val loss only at the start and the end
        "-h": "0",
        "-b": "32",
        "-d": "524288",
        "-t": "1024",
        "-k": "cosine",
        "-q": "0.0",
        "-c": "0.1",
        "-m": "20",
        "-id": "data/fineweb_train_*.bin",
        "-iv": "data/fineweb_val_*.bin",
    }


def test_relative_run_dir_becomes_absolute_because_the_run_has_another_cwd(settings, tmp_path):
    argv = build_argv(make_trial(), settings, "runs/t2")
    assert flags_of(argv)["-o"] == os.path.join(os.getcwd(), "runs", "t2")


@given(st.floats(min_value=1e-12, max_value=10.0, allow_nan=False, allow_infinity=False))
def test_lr_round_trips_through_c_atof_exactly(lr):
    text = format_float(lr, "-l")
    assert _libc.atof(text.encode()) == lr
    assert re.fullmatch(r"[0-9.e+-]+", text), text  # no hex, underscores, or inf/nan


@given(
    steps=st.integers(1, 100_000),
    depth=st.integers(1, 48),
    heads=st.integers(1, 16),
    head_size=st.sampled_from([8, 16, 32, 64, 128]),
    val_every=st.one_of(st.none(), st.integers(1, 10_000)),
    warmup=st.floats(0.0, 0.99),
)
def test_integers_are_plain_decimals_that_atoi_reads_back(
    steps, depth, heads, head_size, val_every, warmup
):
    settings = TrainerSettings(binary="/bin/sh", val_every=val_every, warmup=warmup)
    trial = make_trial(steps=steps, depth=depth, width=heads * head_size, heads=heads)
    flags = flags_of(build_argv(trial, settings, "/tmp/run"))
    for flag in ("-x", "-u", "-1d", "-1c", "-1h", "-n", "-s", "-v", "-h", "-b", "-d", "-t", "-m"):
        assert re.fullmatch(r"-?[0-9]+", flags[flag]), (flag, flags[flag])
    assert _libc.atoi(flags["-x"].encode()) == steps
    assert 0 <= int(flags["-u"]) < steps
    assert int(flags["-v"]) == (steps if val_every is None else val_every)


def test_warmup_fraction_rounds_down_and_an_int_is_fixed_steps(binary):
    fraction = TrainerSettings(binary=binary, warmup=0.1)
    fixed = TrainerSettings(binary=binary, warmup=470)
    assert flags_of(build_argv(make_trial(steps=4725), fraction, "/r"))["-u"] == "472"
    assert flags_of(build_argv(make_trial(steps=4725), fixed, "/r"))["-u"] == "470"
    assert flags_of(build_argv(make_trial(steps=5), fraction, "/r"))["-u"] == "0"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"warmup": 1.5}, r"warmup 1\.5: a float is a fraction .* give an int"),
        ({"warmup": -3}, r"warmup -3 \(-u\) is negative"),
        ({"warmup": 100}, r"warmup 100 \(-u\) is not below the run's 100 steps"),
        ({"micro_batch": 48}, r"total batch 524288 .* micro batch 48 x seq len 1024"),
        ({"seq_len": 2048, "micro_batch": 16}, r"sequence length 2048 \(-t\) must be in 1\.\.1024"),
        ({"micro_batch": 0}, r"micro batch 0 \(-b\)"),
        ({"schedule": "cosin"}, r"schedule 'cosin' .* cosine, linear, constant, wsd"),
        ({"val_every": 0}, r"val_every 0 \(-v\) must be at least 1: .* \(-v 0 crashes\)"),
        ({"val_batches": 0}, r"val batches 0 \(-m\)"),
        ({"checkpoint_every": -1}, r"checkpoint_every -1 \(-n\) is negative"),
        ({"micro_batch": 32.5}, r"-b 32\.5 is not an integer"),
        ({"weight_decay": float("nan")}, r"-c nan is not finite"),
        ({"extra_args": ("-ih",)}, r"odd number of items"),
        ({"extra_args": "-ih x"}, r"is one string"),
        ({"extra_args": ("-b", "16")}, r"sets -b '16', which costbo sets from .*micro_batch"),
        ({"extra_args": ("ih", "x")}, r"flag 'ih' .* is not an llm.c flag"),
        ({"extra_args": ("-abc", "x")}, r"flag '-abc'"),
    ],
)
def test_bad_settings_are_refused_with_the_value_and_the_fix(binary, changes, message):
    settings = TrainerSettings(binary=binary, **changes)
    with pytest.raises(ValueError, match=message):
        build_argv(make_trial(steps=100), settings, "/tmp/run")


@pytest.mark.parametrize(
    ("trial", "message"),
    [
        (make_trial(width=128, heads=3), r"channels 128 is not divisible by heads 3"),
        (make_trial(width=96, heads=8), r"head size 96/8 = 12 is not a multiple of 8"),
        (make_trial(width=768, heads=2), r"head size 768/2 = 384 exceeds 128"),
        (make_trial(depth=0), r"depth 0"),
        (make_trial(lr=0.0), r"lr 0\.0 must be a finite number > 0"),
        (make_trial(lr=float("inf")), r"lr inf"),
        (make_trial(steps=0), r"steps 0 must be a positive integer"),
    ],
)
def test_bad_trials_are_refused_before_launch(settings, trial, message):
    with pytest.raises(ValueError, match=message):
        build_argv(trial, settings, "/tmp/run")


def test_output_dir_of_400_characters_is_refused(settings):
    long_dir = "/tmp/" + "d" * 395
    assert len(long_dir) == 400
    with pytest.raises(ValueError, match=r"is 400 characters; llm.c asserts fewer than 400"):
        build_argv(make_trial(), settings, long_dir)
    build_argv(make_trial(), settings, long_dir[:-1])


def test_extra_args_are_appended_as_pairs(binary):
    settings = TrainerSettings(binary=binary, extra_args=["-ih", "data/hs.bin", "-es", "-1"])
    argv = build_argv(make_trial(), settings, "/r")
    assert argv[-4:] == ["-ih", "data/hs.bin", "-es", "-1"]


def test_hellaswag_and_other_settings_reach_their_flags(binary):
    settings = TrainerSettings(
        binary=binary,
        hellaswag=True,
        micro_batch=16,
        total_batch=16 * 512 * 4,
        seq_len=512,
        schedule="wsd",
        final_lr_fraction=0.1,
        weight_decay=0.0,
        val_every=25,
        val_batches=5,
        checkpoint_every=50,
        train_data="t/*.bin",
        val_data="v/*.bin",
    )
    flags = flags_of(build_argv(make_trial(), settings, "/r"))
    assert {k: flags[k] for k in ("-h", "-b", "-d", "-t", "-k", "-q", "-c", "-v", "-m", "-n")} == {
        "-h": "1",
        "-b": "16",
        "-d": "32768",
        "-t": "512",
        "-k": "wsd",
        "-q": "0.1",
        "-c": "0.0",
        "-v": "25",
        "-m": "5",
        "-n": "50",
    }
    assert (flags["-id"], flags["-iv"]) == ("t/*.bin", "v/*.bin")


def test_overrides_replace_values_in_place_and_add_new_flags(settings):
    argv = build_argv(
        make_trial(steps=4725),
        settings,
        "/r",
        overrides={"-u": 470, "-h": 1, "-n": 1000, "-y": 1},
    )
    flags = flags_of(argv)
    assert (flags["-u"], flags["-h"], flags["-n"], flags["-y"]) == ("470", "1", "1000", "1")
    assert argv[-2:] == ["-y", "1"]
    assert argv.index("-u") == 5  # where it was: after -l and -x


def test_overrides_are_checked_like_everything_else(settings):
    with pytest.raises(ValueError, match=r"stop after 200 steps \(-es\) is beyond the run's 100"):
        build_argv(make_trial(steps=100), settings, "/r", overrides={"-es": 200})
    with pytest.raises(ValueError, match=r"override flag 'x'"):
        build_argv(make_trial(), settings, "/r", overrides={"x": 1})
    with pytest.raises(ValueError, match=r"-n 1000\.5 is not an integer"):
        build_argv(make_trial(), settings, "/r", overrides={"-n": 1000.5})
    with pytest.raises(ValueError, match=r"-n '1e3' is not a plain decimal integer"):
        build_argv(make_trial(), settings, "/r", overrides={"-n": "1e3"})
    argv = build_argv(make_trial(), settings, "/r", overrides={"-n": "250"})
    assert flags_of(argv)["-n"] == "250"


def test_binary_is_found_in_llmc_dir_then_on_path(tmp_path, binary, monkeypatch):
    assert resolve_binary(TrainerSettings(binary="train_gpt2cu", llmc_dir=tmp_path)) == str(binary)
    assert resolve_binary(TrainerSettings(binary="./train_gpt2cu", llmc_dir=tmp_path)) == str(
        binary
    )
    tools = tmp_path / "bin"
    tools.mkdir()
    tool = tools / "costbo-fake-sim"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    assert resolve_binary(TrainerSettings(binary="costbo-fake-sim", llmc_dir=tmp_path)) == str(tool)


def test_missing_or_non_executable_binary_says_how_to_build_it(tmp_path):
    with pytest.raises(ValueError, match=r"'train_gpt2cu' not found .* `make train_gpt2cu"):
        resolve_binary(TrainerSettings(binary="train_gpt2cu", llmc_dir=tmp_path / "nowhere"))
    plain = tmp_path / "plain"
    plain.write_text("")
    plain.chmod(0o644)
    with pytest.raises(ValueError, match=r"is not executable: chmod \+x"):
        resolve_binary(TrainerSettings(binary=plain))


def test_missing_llmc_dir_is_refused_before_launch(tmp_path):
    settings = TrainerSettings(binary="/bin/sh", llmc_dir=tmp_path / "llm.c")
    with pytest.raises(ValueError, match=r"llmc_dir '.*llm.c' is not a directory"):
        build_argv(make_trial(), settings, tmp_path / "run")
