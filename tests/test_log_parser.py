"""Parsing train_gpt2cu's stdout and main.log: every documented line, any chunking, any bytes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costbo.llmc.log_parser import (
    ErrorEvent,
    HellaSwagEvent,
    LogParser,
    MeanStepTimeEvent,
    RunLog,
    SimElapsedEvent,
    StepEvent,
    ValEvent,
)

NAN_FORMS = ["nan", "-nan", "+nan", "inf", "-inf"]


def parse(text: str | bytes, source: str = "stdout") -> list:
    parser = LogParser(source)
    return parser.feed(text) + parser.close()


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


def c_float(value: float, spec: str, nan_form: str | None) -> str:
    """printf's %<spec> of value, or a C nan/inf spelling padded as printf pads it."""
    if nan_form is None:
        return format(value, spec)
    width = spec.split(".")[0].lstrip("+").rstrip("f")
    return nan_form.rjust(int(width)) if width else nan_form


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
maybe_nan = st.one_of(st.none(), st.sampled_from(NAN_FORMS))


@settings(max_examples=200, deadline=None)
@given(
    step=st.integers(1, 99_999),
    total=st.integers(1, 99_999),
    loss=st.floats(0, 20),
    loss_nan=maybe_nan,
    zloss=finite,
    norm=st.floats(0, 1e4),
    norm_nan=maybe_nan,
    lr=st.floats(0, 1),
    ms=st.floats(0, 1e6),
    mfu=st.floats(-100, 100),
    tps=st.floats(0, 1e8),
)
def test_every_step_line_parses(
    step, total, loss, loss_nan, zloss, norm, norm_nan, lr, ms, mfu, tps
):
    line = (
        f"step {step:4d}/{total} | loss {c_float(loss, '7.6f', loss_nan)} ({zloss:+.2f}z)| "
        f"norm {c_float(norm, '6.4f', norm_nan)} (+nanz)| lr {lr:.2e} | {ms:.2f} ms | "
        f"{mfu:.1f}% bf16 MFU | {tps:.0f} tok/s\n"
    )
    [event] = parse(line)
    assert isinstance(event, StepEvent)
    assert (event.step, event.total_steps) == (step, total)
    assert same(event.loss, float(loss_nan) if loss_nan else round(loss, 6))
    assert same(event.norm, float(norm_nan) if norm_nan else round(norm, 4))
    assert event.lr == float(f"{lr:.2e}") and event.ms == round(ms, 2)
    assert event.mfu == float(f"{mfu:.1f}") and event.tokens_per_second == float(f"{tps:.0f}")


@given(value=st.floats(0, 100), nan_form=maybe_nan, step=st.integers(1, 5000))
def test_val_loss_line_parses_and_takes_the_last_step_seen(value, nan_form, step):
    text = f"step {step:4d}/5000 | loss 3.0 (+nanz)| norm 1.0 (+nanz)| lr 1e-4 | 1.0 ms |\n"
    text += f"val loss {c_float(value, 'f', nan_form)}\n"
    events = parse(text)
    assert isinstance(events[-1], ValEvent) and events[-1].step == step
    assert same(events[-1].loss, float(nan_form) if nan_form else float(f"{value:f}"))


@given(
    correct=st.integers(0, 10042),
    total=st.integers(1, 10042),
    progress=st.lists(st.integers(0, 10042), max_size=20),
)
def test_hellaswag_result_parses_behind_its_carriage_return_progress(correct, total, progress):
    prefix = "".join(f"evaluating HellaSwag: {i}/{total}\r" for i in progress)
    accuracy = correct / total
    [event] = parse(f"{prefix}HellaSwag: {correct}/{total} = {accuracy:f}\n")
    assert event == HellaSwagEvent(0, float(f"{accuracy:f}"), correct, total)


@given(value=st.floats(0, 1e7))
def test_average_iteration_time_and_sim_elapsed_parse(value):
    events = parse(f"total average iteration time: {value:f} ms\nsim elapsed: {value:.3f} s\n")
    assert events == [MeanStepTimeEvent(float(f"{value:f}")), SimElapsedEvent(round(value, 3))]


@given(
    step=st.integers(0, 99_999),
    loss=st.floats(0, 20),
    nan_form=maybe_nan,
    lr=st.floats(0, 1),
    norm=st.floats(0, 1e4),
    ms=st.floats(0, 1e6),
)
def test_every_main_log_line_parses_with_zero_based_steps(step, loss, nan_form, lr, norm, ms):
    loss_text = nan_form or f"{loss:.4f}"
    text = (
        f"s:{step} trl:{loss_text} lr:{lr:.6f} norm:{norm:.2f} time (ms):{ms:.2f}\n"
        f"s:{step + 1} tel:{loss_text}\n"
        f"s:{step + 1} eval:{loss / 20:.4f}\n"
    )
    train, val, hellaswag = parse(text, "main.log")
    assert isinstance(train, StepEvent) and train.step == step + 1  # stdout's 1-based number
    assert same(train.loss, float(loss_text))
    assert (train.lr, train.norm, train.ms) == (float(f"{lr:.6f}"), round(norm, 2), round(ms, 2))
    assert isinstance(val, ValEvent) and val.step == step + 1 and same(val.loss, float(loss_text))
    assert hellaswag == HellaSwagEvent(step + 1, float(f"{loss / 20:.4f}"))


def test_upstream_main_log_without_lr_norm_and_time_parses():
    [event] = parse("s:0 trl:10.9876\n", "main.log")
    assert event == StepEvent(1, 10.9876)


def test_step_line_without_mfu_as_upstream_llmc_prints_it():
    [event] = parse(
        "step    7/100 | loss 7.123456 (-1.20z)| norm 0.5000 (+0.30z)| lr 6.00e-04 | "
        "123.45 ms | 65000 tok/s\n"
    )
    assert (event.step, event.loss, event.lr, event.ms) == (7, 7.123456, 6e-4, 123.45)
    assert event.mfu is None and event.tokens_per_second == 65000.0


STDOUT = """\
+-----------------------+----------------------------------------------------+
| Parameter             | Value                                              |
| device                | NVIDIA A10G                                        |
num_parameters: 124475904 => bytes: 248951808
=> setting grad_accum_steps=16
val loss 10.987654
step    1/2 | loss 10.987654 (+nanz)| norm 15.3700 (+nanz)| lr 1.28e-06 | 1234.56 ms | -100.0% bf16 MFU | 424242 tok/s
step    2/2 | loss 9.5 (+nanz)| norm 12.0000 (+nanz)| lr 2.56e-06 | 1000.00 ms | -100.0% bf16 MFU | 424242 tok/s
evaluating HellaSwag: 0/10042\revaluating HellaSwag: 10/10042\rHellaSwag: 2900/10042 = 0.288787
generating:
---
val loss 0.1
step    9/9 | loss 0.000001 (+nanz)| norm 1.0 (+nanz)| lr 1e-3 | 1.0 ms | 1.0% bf16 MFU | 1 tok/s
HellaSwag: 1/1 = 1.0
---
val loss 9.25
total average iteration time: 1000.000000 ms
"""  # noqa: E501


def stdout_events() -> list:
    return [
        ValEvent(0, 10.987654),
        StepEvent(1, 10.987654, 2, 15.37, 1.28e-06, 1234.56, -100.0, 424242.0),
        StepEvent(2, 9.5, 2, 12.0, 2.56e-06, 1000.0, -100.0, 424242.0),
        HellaSwagEvent(2, 0.288787, 2900, 10042),
        ValEvent(2, 9.25),
        MeanStepTimeEvent(1000.0),
    ]


def test_a_whole_run_parses_and_generated_text_is_skipped():
    assert parse(STDOUT) == stdout_events()


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(STDOUT.encode())), max_size=30))
def test_any_chunking_of_the_bytes_gives_the_same_events(cuts):
    data = STDOUT.encode()
    bounds = [0, *sorted(cuts), len(data)]
    parser = LogParser()
    events = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        events += parser.feed(data[a:b])
    assert events + parser.close() == stdout_events()


def test_utf8_split_across_chunks_decodes_whole():
    data = "Error: bad path /tmp/é\n".encode()
    cut = data.index("é".encode()) + 1
    parser = LogParser()
    assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == [
        ErrorEvent("Error: bad path /tmp/é")
    ]


def test_endless_progress_line_is_bounded_and_keeps_its_result():
    parser = LogParser()
    for i in range(0, 200_000, 2000):  # ~6 MB of \r progress without a newline
        assert (
            parser.feed("".join(f"evaluating HellaSwag: {j}/200000\r" for j in range(i, i + 2000)))
            == []
        )
        assert len(parser._partial) <= 1 << 20
    assert parser.feed("HellaSwag: 50000/200000 = 0.250000\n") == [
        HellaSwagEvent(0, 0.25, 50000, 200000)
    ]


def test_partial_last_line_is_parsed_only_at_close():
    parser = LogParser()
    assert parser.feed("val loss 3.5") == []
    assert parser.feed("") == []
    assert parser.close() == [ValEvent(0, 3.5)]


def test_error_lines_are_collected_and_cuda_errors_get_their_detail_line():
    text = (
        "[CUDA ERROR] at file train_gpt2.cu:1234:\n"
        "out of memory\n"
        "[CUDNN ERROR] at file cudnn_att.cpp:99:\n"
        "val loss 3.0\n"
        "Error: failed to glob pattern: data/fineweb_train_*.bin\n"
        "ERROR: could not create directory: /nope\n"
        "train_gpt2cu: train_gpt2.cu:1688: int main(): Assertion `B*T <= total' failed.\n"
        "[CUDA ERROR] at file llmc/adamw.cuh:77:"
    )
    assert parse(text) == [
        ErrorEvent("[CUDA ERROR] at file train_gpt2.cu:1234: out of memory"),
        ErrorEvent(
            "[CUDNN ERROR] at file cudnn_att.cpp:99:"
        ),  # next line is an event, not its detail
        ValEvent(0, 3.0),
        ErrorEvent("Error: failed to glob pattern: data/fineweb_train_*.bin"),
        ErrorEvent("ERROR: could not create directory: /nope"),
        ErrorEvent(
            "train_gpt2cu: train_gpt2.cu:1688: int main(): Assertion `B*T <= total' failed."
        ),
        ErrorEvent("[CUDA ERROR] at file llmc/adamw.cuh:77:"),  # cut off at exit
    ]


@pytest.mark.parametrize(
    "line",
    [
        "step",
        "step 12/",
        "step 1/2 | loss",
        "step 1/2 | loss abc (+nanz)|",
        "step x/2 | loss 1.0 |",
        "val loss",
        "val loss not-a-number",
        "HellaSwag: 1/0 =",
        "total average iteration time: ms",
        "sim elapsed:",
        "stepping out",
        "| num_parameters | 124475904 |",
        "\r\r\r",
        "s:9" * 5000,
    ],
)
def test_cut_or_unknown_lines_are_ignored(line):
    assert parse(line + "\n") == []
    assert parse("s:" + line + "\n", "main.log") == []


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=200), max_size=20),
    source=st.sampled_from(["stdout", "main.log"]),
)
def test_arbitrary_bytes_never_raise(chunks, source):
    parser = LogParser(source)
    log = RunLog()
    for chunk in chunks:
        log.extend(parser.feed(chunk))
    log.extend(parser.close())


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.text(max_size=80),
            st.sampled_from(STDOUT.splitlines()),
            st.builds(lambda n, v: f"s:{n} trl:{v}", st.integers(), st.text(max_size=10)),
        ),
        max_size=30,
    )
)
def test_arbitrary_text_lines_never_raise(lines):
    for source in ("stdout", "main.log"):
        parse("\n".join(lines), source)


def test_run_log_accumulates_by_step_and_resume_duplicates_overwrite():
    log = RunLog()
    log.extend(parse(STDOUT))
    assert log.train_losses == {1: 10.987654, 2: 9.5}
    assert log.val_losses == {0: 10.987654, 2: 9.25}
    assert log.step_ms == {1: 1234.56, 2: 1000.0}
    assert (log.last_val_loss, log.first_loss, log.last_step) == (9.25, 10.987654, 2)
    assert (log.hellaswag, log.mean_step_ms, log.total_steps) == (0.288787, 1000.0, 2)
    assert not log.has_nonfinite_loss
    # a resumed run appends the eval at its resume step again
    log.extend(parse("s:2 tel:9.2000\ns:2 trl:-nan\n", "main.log"))
    assert log.val_losses[2] == 9.2 and math.isnan(log.train_losses[3])
    assert log.has_nonfinite_loss


def test_run_log_collects_errors_and_sim_seconds():
    log = RunLog()
    log.extend(parse("sim elapsed: 1.500 s\nError: x\nsim elapsed: 3.000 s\n"))
    assert log.errors == ["Error: x"] and log.sim_seconds == 3.0
    assert RunLog().last_val_loss is None and RunLog().first_loss is None


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="log source 'stderr' is unknown"):
        LogParser("stderr")  # type: ignore[arg-type]
