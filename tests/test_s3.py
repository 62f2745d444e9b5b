"""S3 sync against a real S3 server (SeaweedFS on 127.0.0.1, tests/s3_server.py) that checks
request signatures: the course's layout after each run, `costbo pull` on another machine, a
wrong secret, and an outage that loses nothing and uploads once the server is back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from s3_server import BUCKET, aws_env_fixture, s3_server_fixture  # noqa: F401 - fixtures

from costbo.cli import main
from costbo.config import DEFAULT_CONFIG_TEXT, load_config
from costbo.s3 import Outbox, S3Sync
from costbo.study import Study
from costbo.trial import TrialStatus

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("aws_env")]


def s3_config(folder: Path, server, cluster: str) -> Path:
    """A costbo-sim study on a small ladder whose runs go to experiments/<cluster>/."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (
        DEFAULT_CONFIG_TEXT.replace(
            "steps = [50, 100, 200, 500, 1000, 2000, 4725]", "steps = [50, 4725]"
        )
        .replace("widths = [64, 128, 192, 256, 384, 512, 768]", "widths = [64, 768]")
        .replace('dir = "llm.c"', 'dir = "."')
        .replace('binary = "train_gpt2cu"', 'binary = "costbo-sim"')
        .replace("simulated = false", "simulated = true")
    )
    text += (
        f'\n[s3]\nbucket = "{BUCKET}"\ncluster = "{cluster}"\n'
        f'endpoint_url = "{server.endpoint_url}"\nregion = "us-east-1"\n'
    )
    path = folder / "costbo.toml"
    path.write_text(text)
    return path


def uploadable(run_dir: Path) -> set[str]:
    return {p.name for p in run_dir.iterdir() if p.suffix in (".log", ".txt", ".json")}


@pytest.fixture(scope="module")
def uploaded_study(tmp_path_factory, s3_server):
    """One simulated run, synced to experiments/shared/ by `costbo optimize`."""
    config_path = s3_config(tmp_path_factory.mktemp("machine-a"), s3_server, "shared")
    assert main(["optimize", "--config", str(config_path), "--max-runs", "1"]) == 0
    return load_config(config_path)


def test_each_run_and_the_journal_are_uploaded_in_the_course_layout(uploaded_study, s3_server):
    config = uploaded_study
    (trial,) = Study.load(config.study.journal, read_only=True).trials
    run_dir = Path(trial.user_attrs["run_dir"])
    names = uploadable(run_dir)
    assert {"stdout.log", "stderr.log", "main.log", "trial.json"} <= names
    keys = s3_server.keys("experiments/shared/")
    assert {f"experiments/shared/{run_dir.name}/{n}" for n in names} <= set(keys)
    assert "experiments/shared/study.jsonl" in keys
    body = s3_server.client().get_object(Bucket=BUCKET, Key="experiments/shared/study.jsonl")
    assert body["Body"].read() == config.study.journal.read_bytes()  # the journal after the tell
    assert Outbox(config.study.runs_dir).waiting() == []


def test_pull_brings_the_study_to_another_machine(uploaded_study, s3_server, tmp_path, capsys):
    source = uploaded_study
    other = load_config(s3_config(tmp_path / "machine-b", s3_server, "shared"))
    assert main(["pull", "--config", str(other.path)]) == 0
    assert other.study.journal.read_bytes() == source.study.journal.read_bytes()
    (trial,) = Study.load(other.study.journal, read_only=True).trials
    name = Path(trial.user_attrs["run_dir"]).name
    pulled = other.study.runs_dir / name
    assert (pulled / "main.log").read_bytes() == (
        source.study.runs_dir / name / "main.log"
    ).read_bytes()
    capsys.readouterr()
    assert main(["status", "--config", str(other.path)]) == 0
    assert "complete" in capsys.readouterr().out

    # a local file that differs is kept unless --force
    (pulled / "stdout.log").write_text("edited here\n")
    assert main(["pull", "--config", str(other.path)]) == 0
    assert "kept local" in capsys.readouterr().out
    assert (pulled / "stdout.log").read_text() == "edited here\n"
    assert main(["pull", "--config", str(other.path), "--force"]) == 0
    assert (pulled / "stdout.log").read_bytes() == (
        source.study.runs_dir / name / "stdout.log"
    ).read_bytes()


def test_a_wrong_secret_is_reported_clearly_and_nothing_is_lost(
    s3_server,
    tmp_path,
    monkeypatch,
    capsys,
):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    config = load_config(s3_config(tmp_path, s3_server, "wrong-secret"))
    run_dir = config.study.runs_dir / "trial-0000_example"
    run_dir.mkdir(parents=True)
    (run_dir / "main.log").write_text("s:0 tel:10.9\n")
    sync = S3Sync(config.s3, config.study.runs_dir)
    sync.queue(run_dir)
    report = sync.flush()
    assert "SignatureDoesNotMatch" in report.error
    assert "secret key does not match the access key id" in report.error
    assert report.waiting == 1 and Outbox(config.study.runs_dir).waiting() == [run_dir.resolve()]
    assert s3_server.keys("experiments/wrong-secret/") == []

    assert main(["pull", "--config", str(config.path)]) == 1
    assert "SignatureDoesNotMatch" in capsys.readouterr().err


def test_missing_credentials_are_named(s3_server, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    config = load_config(s3_config(tmp_path, s3_server, "no-credentials"))
    sync = S3Sync(config.s3, config.study.runs_dir)
    sync.queue(config.path)
    report = sync.flush()
    assert "no usable AWS credentials" in report.error and "AWS_ACCESS_KEY_ID" in report.error


def test_server_down_keeps_results_local_and_uploads_them_when_back(
    s3_server,
    tmp_path,
    capsys,
):
    config = load_config(s3_config(tmp_path, s3_server, "outage"))
    s3_server.stop()
    try:
        assert main(["optimize", "--config", str(config.path), "--max-runs", "1"]) == 0
        out = capsys.readouterr().out
        assert "cannot reach" in out and "Local results are safe" in out
        (trial,) = Study.load(config.study.journal, read_only=True).trials
        assert trial.status is TrialStatus.COMPLETE  # the run itself was not held up
        run_dir = Path(trial.user_attrs["run_dir"]).resolve()
        waiting = Outbox(config.study.runs_dir).waiting()
        assert run_dir in waiting and config.study.journal.resolve() in waiting
        assert main(["status", "--config", str(config.path)]) == 0
        assert "waiting for upload" in capsys.readouterr().out
        assert main(["sync", "--config", str(config.path)]) == 1  # still down: says so
    finally:
        s3_server.start()
    assert main(["sync", "--config", str(config.path)]) == 0
    keys = set(s3_server.keys("experiments/outage/"))
    assert {f"experiments/outage/{run_dir.name}/{n}" for n in uploadable(run_dir)} <= keys
    assert "experiments/outage/study.jsonl" in keys
    assert Outbox(config.study.runs_dir).waiting() == []
    record = json.loads((run_dir / "trial.json").read_text())
    assert record["result"]["status"] == "complete"
