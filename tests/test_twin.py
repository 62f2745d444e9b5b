"""The CPU twin speaks train_gpt2cu's interface and really trains (real processes, real text)."""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from costbo.corpus import prepare_data
from costbo.gpt2 import num_parameters
from costbo.llmc.shards import write_shard
from costbo.twin.adamw import AdamW
from costbo.twin.data import ShardLoader, TooFewTokens, llmc_rng, random_permutation
from costbo.twin.model import GPT, TanhGELU
from costbo.twin.schedule import ScheduleAssertion, UnknownSchedule, learning_rate
from costbo.twin.train import atof, atoi, main, num_parameters_for, parse_flags

# llm.c's printf formats (llmc-interface.md) as regexes; %4d is a right-aligned width-4 field


def c_float(decimals):
    """C's %.Nf: digits, or nan/inf with an optional sign."""
    return r"(?:-?\d+\.\d{" + str(decimals) + r"}|[+-]?nan|[+-]?inf)"


ZSCORE = r"[+-](?:\d+\.\d{2}|nan|inf)"  # %+.2f
STEP_LINE = re.compile(
    r"^step (?P<step>[ \d]{3}\d|\d{5,})/(?P<total>\d+) \| loss (?P<loss> *" + c_float(6) + ")"
    r" \((?P<zl>" + ZSCORE + r")z\)\| norm (?P<norm> *" + c_float(4) + r") \(" + ZSCORE + r"z\)"
    r"\| lr \d\.\d{2}e[+-]\d{2} \| \d+\.\d{2} ms \| -100\.0% bf16 MFU \| \d+ tok/s$"
)
VAL_LINE = re.compile(r"^val loss (?P<loss>" + c_float(6) + ")$")
LOG_TRAIN = re.compile(
    r"^s:(?P<step>\d+) trl:(?P<loss>"
    + c_float(4)
    + r") lr:\d+\.\d{6} norm:"
    + c_float(2)
    + r" time \(ms\):\d+\.\d{2}$"
)
LOG_VAL = re.compile(r"^s:(?P<step>\d+) tel:(?P<loss>" + c_float(4) + ")$")
TABLE_ROW = re.compile(r"^\| .{21} \| .{50,} \|$")  # %-50s: longer values overflow
RULE = "+" + "-" * 23 + "+" + "-" * 52 + "+"
TINY = ["-vs", "256", "-1d", "1", "-1c", "64", "-1h", "1", "-n", "0", "-s", "0"]


@pytest.fixture(scope="module")
def byte_data(tmp_path_factory):
    """Byte-level shards of the default corpus (Python's own docs, ~2 MB)."""
    return prepare_data(tmp_path_factory.mktemp("data"), tokenizer="bytes")


def run_twin(args, cwd, data=None):
    """The twin as a real process (``python -m costbo.twin.train``, as the console script)."""
    argv = [sys.executable, "-m", "costbo.twin.train"]
    if data is not None:
        argv += ["-id", data.train_pattern, "-iv", data.val_pattern]
    return subprocess.run(
        argv + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def run_in_process(args, capsys, data=None):
    """``main(argv)`` in this process (torch is already imported): (status, stdout, stderr)."""
    if data is not None:
        args = ["-id", data.train_pattern, "-iv", data.val_pattern] + args
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def step_lines(stdout):
    return [line for line in stdout.splitlines() if line.startswith("step ")]


FORMAT_RUN = TINY + ["-b", "4", "-t", "32", "-d", "256", "-x", "12", "-u", "2", "-v", "5"]
FORMAT_RUN += ["-m", "3", "-l", "1e-3"]


@pytest.fixture(scope="module")
def format_run(byte_data, tmp_path_factory):
    """12 tiny steps with grad accumulation 2 and val every 5 steps, in a real process."""
    cwd = tmp_path_factory.mktemp("format_run")
    result = run_twin(FORMAT_RUN + ["-o", "run"], cwd, byte_data)
    assert result.returncode == 0, result.stderr
    return result, cwd / "run"


def test_stdout_follows_llmc_formats(format_run):
    result, _ = format_run
    lines = result.stdout.splitlines()
    table = lines[: lines.index("=> setting grad_accum_steps=2") + 1]
    assert table[0] == RULE and table[1].startswith("| Parameter ")
    rows = [line for line in table if line.startswith("| ")]
    assert len(rows) > 40 and all(TABLE_ROW.match(row) for row in rows)
    assert f"| num_parameters        | {num_parameters_for(1, 64, 256):<50d} |" in rows
    assert f"num_parameters: 132032 => bytes: {4 * 132032}" in lines
    assert "HellaSwag eval not found at data/hellaswag_val.bin, skipping its evaluation" in lines

    steps = [STEP_LINE.match(line) for line in step_lines(result.stdout)]
    assert all(steps) and len(steps) == 12
    assert [int(m["step"]) for m in steps] == list(range(1, 13))
    assert all(m["total"] == "12" and m["zl"] == "+nan" for m in steps)  # z: nan < 128 steps
    assert step_lines(result.stdout)[0].startswith("step    1/12 | loss ")
    # val loss at step 0, every -v 5 steps and at the end, each printed before that step's line
    events = [
        "val" if VAL_LINE.match(x) else "step"
        for x in lines
        if VAL_LINE.match(x) or STEP_LINE.match(x)
    ]
    assert events == ["val"] + ["step"] * 5 + ["val"] + ["step"] * 5 + ["val"] + ["step"] * 2 + [
        "val"
    ]
    assert re.fullmatch(r"total average iteration time: \d+\.\d{6} ms", lines[-1])


def test_main_log_follows_llmc_formats(format_run):
    result, run_dir = format_run
    log = (run_dir / "main.log").read_text().splitlines()
    train_log = [LOG_TRAIN.match(line) for line in log if " trl:" in line]
    val_log = [LOG_VAL.match(line) for line in log if " tel:" in line]
    assert all(train_log) and all(val_log) and len(train_log) + len(val_log) == len(log)
    assert [int(m["step"]) for m in train_log] == list(range(12))  # 0-based
    assert [int(m["step"]) for m in val_log] == [0, 5, 10, 12]
    first_step = STEP_LINE.match(step_lines(result.stdout)[0])
    assert float(train_log[0]["loss"]) == pytest.approx(float(first_step["loss"]), abs=1e-4)
    assert "| micro batch size B    | 4 " in (run_dir / "run_parameters.txt").read_text()


def test_same_flags_give_the_same_losses(format_run, byte_data, tmp_path):
    _, first_dir = format_run
    result = run_twin(FORMAT_RUN + ["-o", "run"], tmp_path, byte_data)
    assert result.returncode == 0, result.stderr

    def losses(run_dir):
        return re.sub(r" time \(ms\):\S+", "", (run_dir / "main.log").read_text())

    assert losses(tmp_path / "run") == losses(first_dir)


def test_loss_falls_on_real_text(byte_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = TINY + ["-b", "16", "-t", "128", "-d", "2048", "-x", "60", "-u", "10", "-l", "3e-3"]
    status, out, err = run_in_process(args + ["-v", "60", "-m", "4"], capsys, byte_data)
    assert status == 0, err
    val = [float(m["loss"]) for m in map(VAL_LINE.match, out.splitlines()) if m]
    assert val[0] == pytest.approx(math.log(256), abs=0.3)  # uniform over bytes at init
    assert val[-1] < val[0] - 1.0


def test_learning_rate_far_too_high_diverges(byte_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = TINY + ["-b", "8", "-t", "64", "-d", "512", "-x", "10", "-u", "0", "-k", "constant"]
    status, out, err = run_in_process(args + ["-l", "10", "-m", "2"], capsys, byte_data)
    assert status == 0, err  # like llm.c it keeps going
    losses = [float(STEP_LINE.match(line)["loss"]) for line in step_lines(out)]
    assert len(losses) == 10
    assert math.isnan(losses[-1]) or max(losses[2:]) > 5 * losses[0]


@pytest.mark.parametrize("argv", [["-lr", "3e-4"], ["-b"], ["x", "1"], ["-pm", "tcp"]])
def test_unknown_flag_prints_usage_and_exits_1(tmp_path, argv):
    result = run_twin(argv, tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("Usage:") and "-vs" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args, assertion",
    [
        (["-u", "-1"], "warmup_iterations >= 0"),
        (["-x", "10", "-es", "11"], "early_stopping_steps <= max_steps"),
        (["-b", "4", "-t", "32", "-d", "100"], "total_batch_size % tokens_per_fwdbwd == 0"),
        (["-b", "1", "-t", "2048", "-d", "2048"], "T <= model.config.max_seq_len"),
    ],
)
def test_llmc_asserts_abort(byte_data, tmp_path, args, assertion):
    result = run_twin(TINY + ["-o", "run"] + args, tmp_path, byte_data)
    assert result.returncode == -signal.SIGABRT  # 134 in a shell, as train_gpt2cu
    assert f"Assertion `{assertion}' failed." in result.stderr


def test_bad_shape_exits_1_with_the_fix(tmp_path):
    result = run_twin(["-1c", "64", "-1h", "3"], tmp_path)
    assert result.returncode == 1 and "not divisible by heads 3" in result.stderr


def _run_on_shard(shard, capsys):
    args = TINY + ["-id", shard, "-iv", shard, "-b", "4", "-t", "32", "-d", "128", "-o", "run"]
    return run_in_process(args, capsys)


def test_bad_magic_fails_like_llmc(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    header = np.zeros(256, dtype="<i4")
    header[:3] = 1234, 1, 500
    (tmp_path / "bad.bin").write_bytes(header.tobytes() + b"\0" * 1000)
    status, out, err = _run_on_shard("bad.bin", capsys)
    assert status == 1
    assert "Bad magic in the data file" in out and "bad magic 1234" in err


def test_truncated_shard_fails_like_llmc(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = write_shard(tmp_path / "ok.bin", np.arange(500) % 256).read_bytes()
    (tmp_path / "cut.bin").write_bytes(raw[:-10])
    status, out, _ = _run_on_shard("cut.bin", capsys)
    assert status == 1 and "Error: file size is not as expected" in out


def test_glob_matching_nothing_fails_like_llmc(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, _ = _run_on_shard("data/none_*.bin", capsys)
    assert status == 1 and "Error: failed to glob pattern: data/none_*.bin" in out


def test_token_beyond_the_vocab_flag_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_shard(tmp_path / "gpt2.bin", np.arange(500) * 100)  # ids up to 49900 with -vs 256
    status, _, err = _run_on_shard("gpt2.bin", capsys)
    assert status == 1 and "token id 49900" in err and "-vs" in err


def test_shard_shorter_than_a_batch_is_refused_like_llmcs_assert(tmp_path):
    write_shard(tmp_path / "small.bin", np.arange(100) % 256)  # B*T+1 = 129
    with pytest.raises(TooFewTokens, match="fewer than B\\*T\\+1 = 129"):
        ShardLoader(str(tmp_path / "small.bin"), 4, 32, shuffle=True, vocab_size=256)


def test_train_loader_shuffles_like_llmc_and_val_loader_reads_in_order(tmp_path):
    write_shard(tmp_path / "s.bin", np.arange(4 * 8 * 5 + 1) % 256)  # 5 samples of B*T = 32
    ordered = ShardLoader(str(tmp_path / "s.bin"), 4, 8, shuffle=False, vocab_size=256)
    starts = [int(ordered.next_batch()[0][0, 0]) for _ in range(6)]
    assert starts == [0, 32, 64, 96, 128, 0]  # wraps around after the last sample
    shuffled = ShardLoader(str(tmp_path / "s.bin"), 4, 8, shuffle=True, vocab_size=256)
    order = [int(shuffled.next_batch()[0][0, 0]) // 32 for _ in range(5)]
    rng, expected = llmc_rng(42), list(range(5))
    random_permutation(expected, rng)
    assert order == expected and sorted(order) == list(range(5))
    x, y = ordered.next_batch()
    assert x.shape == (4, 8) and torch.equal(x.flatten()[1:], y.flatten()[:-1])


def test_num_parameters_is_llmcs_formula():
    assert num_parameters_for(1, 64) == num_parameters(1, 64) == 3_335_104
    assert num_parameters_for(12, 768) == num_parameters(12, 768) == 124_475_904
    model = GPT(2, 128, 2, vocab_size=50257, padded_vocab_size=50304)
    assert sum(p.numel() for p in model.parameters()) == num_parameters(2, 128)
    model = GPT(1, 64, 1, vocab_size=256, padded_vocab_size=256)
    assert sum(p.numel() for p in model.parameters()) == num_parameters_for(1, 64, 256)


def test_init_follows_llmc():
    model = GPT(4, 64, 1, vocab_size=300, padded_vocab_size=320)
    block = model.blocks[0]
    assert model.wte.weight[300:].abs().max() == 0  # padded rows stay zero
    assert model.wte.weight[:300].std().item() == pytest.approx(0.02, rel=0.05)
    assert block.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.fc_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert torch.all(block.ln1.weight == 1) and torch.all(block.qkv.bias == 0)


def test_fused_classifier_equals_cross_entropy():
    model = GPT(1, 64, 1, vocab_size=50257, padded_vocab_size=50304)
    x, y = torch.randint(0, 50257, (2, 16)), torch.randint(0, 50257, (2, 16))
    fused = model(x, y)
    fused.backward()
    fused_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    plain = F.cross_entropy(model.logits(x).view(-1, 50257), y.view(-1))
    plain.backward()
    assert fused.item() == pytest.approx(plain.item(), abs=1e-5)
    for a, p in zip(fused_grads, model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-7)


def test_gelu_is_llmcs_tanh_approximation_with_its_gradient():
    x = (torch.randn(4096, dtype=torch.float64) * 3).requires_grad_()
    reference = F.gelu(x, approximate="tanh")
    (grad_reference,) = torch.autograd.grad(reference.sum(), x)
    x32 = x.detach().float().requires_grad_()
    ours = TanhGELU.apply(x32)
    ours.sum().backward()
    assert torch.allclose(ours.double(), reference, atol=1e-6, rtol=1e-6)
    assert torch.allclose(x32.grad.double(), grad_reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kind, step, expected",
    [
        ("cosine", 9, 1e-3),  # end of warmup: lr*(step+1)/W
        ("cosine", 0, 1e-4),
        ("cosine", 55, 0.1e-3 + 0.5 * (1 + math.cos(math.pi * 45 / 90)) * 0.9e-3),
        ("linear", 55, 1e-3 - 45 / 90 * 0.9e-3),
        ("constant", 0, 1e-3),
        ("wsd", 50, 1e-3),
        ("wsd", 90, 0.1e-3 + (1 - math.sqrt(10 / 20)) * 0.9e-3),
    ],
)
def test_schedules_follow_llmc_formulas(kind, step, expected):
    lr = learning_rate(kind, step, 1e-3, warmup=10, total_steps=100, final_fraction=0.1)
    assert lr == pytest.approx(expected, rel=1e-6)


def test_schedule_failures_match_llmc():
    with pytest.raises(UnknownSchedule, match="Unknown learning rate scheduler type: cosin"):
        learning_rate("cosin", 0, 1e-3, 0, 10, 0.0)
    with pytest.raises(ScheduleAssertion):
        learning_rate("cosine", 10, 1e-3, 10, 10, 0.0)  # W == N: 0/0 decay ratio


def test_shuffle_rng_reproduces_llmc_mt19937():
    rng = llmc_rng(137)  # the reference values printed in llm.c's rand.h
    assert [rng.getrandbits(32) for _ in range(5)] == [
        4053805790,
        2173880614,
        380293709,
        1237255315,
        2986595568,
    ]


def test_values_parse_like_atoi_and_atof():
    assert [atoi(s) for s in ["42", " 7x", "1e3", "abc", "-3", ""]] == [42, 7, 1, 0, -3, 0]
    assert [atof(s) for s in ["3e-4", "x", "1.5abc", ".5", "-2"]] == [3e-4, 0.0, 1.5, 0.5, -2.0]
    assert math.isinf(atof("inf"))


def test_flags_match_on_llmcs_prefix_rules():
    config = parse_flags(["-bq", "8", "-l", "0.01", "-lg", "5", "-vs", "256", "-v", "9"])
    assert (config.B, config.learning_rate, config.log_gpu_every) == (8, 0.01, 5)
    assert (config.vocab_size, config.val_loss_every) == (256, 9)


def test_adamw_equals_torch_adamw_with_decay_on_2d_weights_only():
    torch.manual_seed(0)
    ours, reference = GPT(1, 64, 1, 256, 256), GPT(1, 64, 1, 256, 256)
    decay, no_decay = reference.parameters_by_decay()
    assert {p.dim() for p in decay} == {2} and {p.dim() for p in no_decay} == {1}
    optimizer = AdamW(*ours.parameters_by_decay(), weight_decay=0.1)
    torch_adamw = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    for t in range(1, 4):
        x, y = torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16))
        ours(x, y).backward()
        reference(x, y).backward()
        optimizer.step(1e-2 * t, t)
        optimizer.zero_grad()
        torch_adamw.param_groups[0]["lr"] = torch_adamw.param_groups[1]["lr"] = 1e-2 * t
        torch_adamw.step()
        torch_adamw.zero_grad()
    for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def llmc_normal(count, std, rng):
    """llm.c's rand.h normal_ for a multiple of 16 numbers (Box-Muller over blocks of 16)."""
    bits = np.array([rng.getrandbits(32) for _ in range(count)], dtype=np.uint64)
    u = ((bits & (2**24 - 1)).astype(np.float32) / np.float32(2**24)).reshape(-1, 2, 8)
    radius = np.sqrt(-2 * np.log(1 - u[:, 0] + np.float32(1e-12)))
    theta = (2.0 * math.pi * u[:, 1]).astype(np.float32)
    return np.concatenate([radius * np.cos(theta), radius * np.sin(theta)], axis=1).ravel() * std


def test_initial_embeddings_are_llmcs_draws():
    model = GPT(1, 64, 1, vocab_size=256, padded_vocab_size=256)
    rng = llmc_rng(42)  # llm.c draws wte's V rows first, then wpe, from one mt19937 seeded 42
    wte, wpe = llmc_normal(256 * 64, 0.02, rng), llmc_normal(1024 * 64, 0.02, rng)
    assert np.allclose(model.wte.weight.detach().numpy().ravel(), wte, atol=1e-7)
    assert np.allclose(model.wpe.weight.detach().numpy().ravel(), wpe, atol=1e-7)
