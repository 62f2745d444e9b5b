"""The TOML config: `costbo init`'s defaults load as the homework's, and every bad value fails
before anything runs with an error naming the file, the key, the value and what is expected."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from costbo.cli import main
from costbo.config import (
    DEFAULT_CONFIG_TEXT,
    ConfigError,
    load_config,
    write_default_config,
)
from costbo.gpt2 import ModelShape


def test_init_writes_a_config_with_the_homeworks_defaults(tmp_path, capsys):
    path = tmp_path / "costbo.toml"
    assert main(["init", str(path)]) == 0
    config = load_config(path)
    assert config.study.budget == 20.0
    assert config.study.price_per_hour == 1.5
    assert config.space.target.steps == 4725
    assert config.space.target.model == ModelShape(12, 768, 12)
    assert config.trainer.micro_batch == 32
    assert config.trainer.total_batch == 524288
    assert config.trainer.binary == "train_gpt2cu"
    assert config.trainer.train_data == "data/fineweb_train_*.bin"
    assert config.trainer.val_data == "data/fineweb_val_*.bin"
    assert config.trainer.hellaswag is False  # tuning runs; the final run turns it on
    assert config.final.hellaswag is True and config.final.micro_batch == 32
    assert config.probe.steps == 20
    assert config.s3 is None  # optional and commented out
    # relative paths are anchored at the config file's folder, not the working dir
    assert config.trainer.llmc_dir == tmp_path / "llm.c"
    assert config.study.journal == tmp_path / "runs" / "study.jsonl"
    assert "[llmc] dir" in capsys.readouterr().out


def test_every_key_of_the_default_config_has_a_comment():
    for line in DEFAULT_CONFIG_TEXT.splitlines():
        if re.match(r"^[a-z_]+ = ", line):
            assert "#" in line, f"uncommented key: {line}"


def test_init_refuses_to_overwrite_without_force(tmp_path, capsys):
    path = tmp_path / "costbo.toml"
    path.write_text("# mine\n")
    assert main(["init", str(path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert path.read_text() == "# mine\n"
    assert main(["init", str(path), "--force"]) == 0
    assert path.read_text() == DEFAULT_CONFIG_TEXT


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_CONFIG_TEXT
    assert old in text, old
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    return path


BAD_VALUES = [
    # (text in the default config, replacement, fragments the error must contain)
    ("budget = 20.0", "budget = -5", ["[study] budget", "-5", "dollars > 0"]),
    ("price_per_hour = 1.50", 'price_per_hour = "cheap"', ["[study] price_per_hour", "'cheap'"]),
    ("budget = 20.0", "budjet = 20.0", ["[study] budjet", "did you mean 'budget'"]),
    ("[space]", "[sapce]", ["[sapce]", "did you mean [space]"]),
    ("steps = [50, 100, 200", "steps = [100, 50, 200", ["[space] steps", "not sorted"]),
    ("lr = [1e-5, 1e-1]", "lr = [1e-1, 1e-5]", ["[space] lr", "low < high"]),
    ("micro_batch = 32                       # -b", "micro_batch = 48  # -b",
     ["[llmc] total_batch", "524288", "48 x 1024"]),
    ('schedule = "cosine"', 'schedule = "cosin"', ["[llmc] schedule", "'cosin'", "cosine, linear"]),
    ("warmup = 0.1", "warmup = 1.5", ["[llmc] warmup", "1.5", "[0, 1)"]),
    ("warmup = 0.1", "warmup = 60", ["[llmc] warmup = 60", "smallest steps rung 50"]),
    ("seq_len = 1024", "seq_len = 2048", ["[llmc] seq_len", "2048", "1..1024"]),
    ("extra_args = []", 'extra_args = ["-ih"]', ["[llmc] extra_args", "pairs"]),
    ("extra_args = []", 'extra_args = ["-l", "0.1"]', ["[llmc] extra_args", "-l", "trial's lr"]),
    ("hellaswag = false", "hellaswag = 0", ["[llmc] hellaswag", "true or false"]),
    ("cost_margin = 2.0", "cost_margin = 0", ["[runner] cost_margin", "0", "> 0"]),
    ("steps = 20 ", "steps = 12 ", ["[probe] steps", "12", ">= 20"]),
    ("checkpoint_every = 1000", "checkpoint_every = -1", ["[final] checkpoint_every", "-1"]),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "fragments"), BAD_VALUES)
def test_bad_value_names_file_key_value_and_expectation(tmp_path, old, new, fragments):
    path = _edited(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_a_bad_model_shape_says_why_llmc_would_fail(tmp_path):
    path = _edited(
        tmp_path,
        "widths = [64, 128, 192, 256, 384, 512, 768]",
        "models = [[1, 60, 1], [12, 768, 12]]",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "[space] models" in str(info.value)
    assert "multiple of 8" in str(info.value)


def test_widths_and_models_together_are_refused(tmp_path):
    path = _edited(tmp_path, "# models = [[1, 64, 1]", "models = [[1, 64, 1]")
    path.write_text(path.read_text().replace("[2, 128, 2], [12, 768, 12]]", "[12, 768, 12]]"))
    with pytest.raises(ConfigError, match="both widths and models"):
        load_config(path)


def test_explicit_models_replace_the_width_ladder(tmp_path):
    path = _edited(
        tmp_path,
        "widths = [64, 128, 192, 256, 384, 512, 768]",
        "models = [[1, 32, 1], [2, 96, 2], [12, 768, 12]]",
    )
    config = load_config(path)
    assert {f.model for f in config.space.fidelities} == {
        ModelShape(1, 32, 1), ModelShape(2, 96, 2), ModelShape(12, 768, 12)
    }  # fmt: skip


def test_s3_section_is_validated_and_never_holds_credentials(tmp_path):
    base = DEFAULT_CONFIG_TEXT
    ok = tmp_path / "ok.toml"
    ok.write_text(base + '[s3]\nbucket = "b-1"\ncluster = "g5"\nregion = "us-east-1"\n')
    s3 = load_config(ok).s3
    assert (s3.bucket, s3.cluster, s3.prefix) == ("b-1", "g5", "experiments/g5/")

    missing = tmp_path / "missing.toml"
    missing.write_text(base + '[s3]\nbucket = "b-1"\n')
    with pytest.raises(ConfigError, match=r"missing.toml: \[s3\] cluster is missing"):
        load_config(missing)

    secret = tmp_path / "secret.toml"
    secret.write_text(base + '[s3]\nbucket = "b"\ncluster = "c"\naws_secret_access_key = "x"\n')
    with pytest.raises(ConfigError, match="credentials never go in the config file"):
        load_config(secret)

    url = tmp_path / "url.toml"
    url.write_text(base + '[s3]\nbucket = "s3://b/x"\ncluster = "c"\n')
    with pytest.raises(ConfigError, match=r"\[s3\] bucket = 's3://b/x'.*bare bucket name"):
        load_config(url)


def test_broken_toml_and_missing_files_get_a_clear_error(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[study]\nbudget = = 3\n")
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML .*line 2"):
        load_config(broken)
    with pytest.raises(ConfigError, match="does not exist: write one with `costbo init"):
        load_config(tmp_path / "nope.toml")
    partial = tmp_path / "partial.toml"
    partial.write_text("[study]\nbudget = 3.0\nprice_per_hour = 1.5\n")
    with pytest.raises(ConfigError, match=r"section \[space\] is missing"):
        load_config(partial)


def test_cli_reports_config_errors_with_exit_code_2(tmp_path, capsys):
    path = _edited(tmp_path, "budget = 20.0", "budget = 0")
    assert main(["status", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "[study] budget = 0" in err


def test_written_default_config_parses_as_plain_toml(tmp_path):
    path = write_default_config(tmp_path)
    assert path.name == "costbo.toml"
    assert set(tomllib.loads(path.read_text())) == {
        "study", "space", "llmc", "runner", "probe", "final"
    }  # fmt: skip


def test_config_knows_every_acquisition_and_the_studys_default():
    import inspect

    from costbo.acquisition import ACQUISITIONS
    from costbo.config import ACQUISITION_NAMES, DEFAULT_ACQUISITION
    from costbo.study import Study

    assert set(ACQUISITION_NAMES) == set(ACQUISITIONS)
    assert inspect.signature(Study).parameters["acquisition"].default == DEFAULT_ACQUISITION
