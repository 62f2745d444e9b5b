"""Copies of every run on S3 in the course's layout, and ``costbo pull`` to fetch a study back.

Layout (what the course's upload script and notebook use)::

    s3://<bucket>/experiments/<cluster>/<run dir name>/stdout.log, stderr.log, main.log,
                                                        trial.json, run_parameters.txt
    s3://<bucket>/experiments/<cluster>/study.jsonl      (the journal, beside the runs)
    s3://<bucket>/experiments/<cluster>/cost_table.csv   (from `costbo probe`)

An S3 failure never blocks or loses local results: what could not be uploaded stays listed in an
outbox (``<runs dir>/.s3-outbox/``, one marker file per run dir or file) and is retried on the
next sync (after the next run, or ``costbo sync``). Credentials come only from boto3's standard
chain (environment, shared files with ``[s3] profile``, instance role); costbo never writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from costbo.config import S3Settings

# Files of a run dir worth copying: logs, parameters, trial.json. Not the checkpoints (.bin,
# ~8.7 GB per full run) nor half-written temporaries.
UPLOAD_SUFFIXES = (".log", ".txt", ".json", ".jsonl", ".csv")
OUTBOX_NAME = ".s3-outbox"


class S3Error(RuntimeError):
    """An S3 operation that failed, explained: what failed, why, and what to do."""


def explain(err: BaseException, settings: S3Settings, action: str) -> str:
    """A sentence for a boto3/botocore error: which credential, bucket or endpoint is wrong."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    where = f"s3://{settings.bucket}/{settings.prefix}"
    endpoint = settings.endpoint_url or "AWS S3" + (
        f" ({settings.region})" if settings.region else ""
    )
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = error.get("Code", "?")
        message = error.get("Message", str(err))
        if code == "SignatureDoesNotMatch":
            return (
                f"{action} {where} failed: S3 rejected the request signature "
                "(SignatureDoesNotMatch): the secret key does not match the access key id. Check "
                "AWS_SECRET_ACCESS_KEY or the aws_secret_access_key of the profile in use"
            )
        if code in ("InvalidAccessKeyId", "InvalidClientTokenId"):
            return (
                f"{action} {where} failed: S3 does not know this access key id ({code}). Check "
                "AWS_ACCESS_KEY_ID or the profile in use ([s3] profile)"
            )
        if code in ("AccessDenied", "403", "Forbidden"):
            return (
                f"{action} {where} failed: access denied ({code}): these credentials may not "
                f"read/write bucket {settings.bucket!r}; grant s3:PutObject, s3:GetObject and "
                "s3:ListBucket on it"
            )
        if code == "NoSuchBucket":
            return (
                f"{action} {where} failed: bucket {settings.bucket!r} does not exist at "
                f"{endpoint}: create it (`aws s3 mb s3://{settings.bucket}`) or fix [s3] bucket"
            )
        return f"{action} {where} failed: S3 answered {code}: {message}"
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return (
            f"{action} {where} failed: no usable AWS credentials ({err}). boto3 looks in "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials ([s3] profile) and the "
            "instance role; costbo never stores credentials itself"
        )
    if isinstance(err, ProfileNotFound):
        return (
            f"{action} {where} failed: AWS profile {settings.profile!r} ([s3] profile) is not in "
            "~/.aws/config or ~/.aws/credentials: add it or remove the key"
        )
    if isinstance(err, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return f"{action} {where} failed: cannot reach {endpoint} ({err})"
    return f"{action} {where} failed: {type(err).__name__}: {err}"


class S3Store:
    """The bucket and prefix of one cluster's runs, reached through boto3."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config as BotoConfig
            from botocore.exceptions import BotoCoreError

            try:
                session = boto3.session.Session(
                    profile_name=self.settings.profile, region_name=self.settings.region
                )
                self._client = session.client(
                    "s3",
                    endpoint_url=self.settings.endpoint_url,
                    config=BotoConfig(
                        connect_timeout=5,
                        read_timeout=60,
                        retries={"max_attempts": 2, "mode": "standard"},
                    ),
                )
            except BotoCoreError as err:
                raise S3Error(explain(err, self.settings, "connecting to")) from None
        return self._client

    def key(self, relative: str) -> str:
        return self.settings.prefix + relative

    def _call(self, action: str, fn, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except (BotoCoreError, ClientError) as err:
            raise S3Error(explain(err, self.settings, action)) from None

    def upload_file(self, path: Path, relative_key: str) -> str:
        """Upload one file to ``experiments/<cluster>/<relative_key>``; returns the full key."""
        key = self.key(relative_key)
        with open(path, "rb") as body:
            self._call(
                f"uploading {path.name} to",
                self.client.put_object,
                Bucket=self.settings.bucket,
                Key=key,
                Body=body,
            )
        return key

    def upload_run_dir(self, run_dir: Path) -> list[str]:
        """Upload a run dir's logs and trial.json under ``<run dir name>/``."""
        keys = []
        for path in sorted(run_dir.iterdir()):
            if path.is_file() and path.suffix in UPLOAD_SUFFIXES:
                keys.append(self.upload_file(path, f"{run_dir.name}/{path.name}"))
        return keys

    def list_keys(self) -> list[str]:
        """Every key under ``experiments/<cluster>/``."""
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []

        def collect():
            for page in paginator.paginate(
                Bucket=self.settings.bucket, Prefix=self.settings.prefix
            ):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))

        self._call("listing", collect)
        return keys

    def download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        response = self._call(
            f"downloading {key} from", self.client.get_object, Bucket=self.settings.bucket, Key=key
        )
        data = self._call(f"downloading {key} from", response["Body"].read)
        # Write beside and rename: an interrupted pull never leaves half a journal.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


class Outbox:
    """Runs and files that still have to reach S3: one marker file each, removed once uploaded."""

    def __init__(self, runs_dir: Path) -> None:
        self.folder = Path(runs_dir) / OUTBOX_NAME

    def _marker(self, path: Path) -> Path:
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        return self.folder / f"{path.name}.{digest}.json"

    def add(self, path: Path) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self._marker(path)
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(json.dumps({"path": str(Path(path).resolve())}))
        os.replace(tmp, marker)

    def remove(self, path: Path) -> None:
        self._marker(path).unlink(missing_ok=True)

    def waiting(self) -> list[Path]:
        """Paths waiting for upload: run dirs first, then files (the journal last)."""
        if not self.folder.is_dir():
            return []
        paths = []
        for marker in sorted(self.folder.glob("*.json")):
            try:
                paths.append(Path(json.loads(marker.read_text())["path"]))
            except (ValueError, KeyError, OSError):
                marker.unlink(missing_ok=True)  # a marker cut by a crash: nothing to say
        return sorted(paths, key=lambda p: (p.is_file(), p.suffix == ".jsonl", p.name))


@dataclass
class SyncReport:
    """What one sync did: keys uploaded, the error that stopped it (None: all done), and how
    many runs or files still wait in the outbox."""

    uploaded: list[str] = field(default_factory=list)
    error: str | None = None
    waiting: int = 0


class S3Sync:
    """Queues run dirs and files for upload and uploads everything queued, journal last."""

    def __init__(self, settings: S3Settings, runs_dir: Path, store: S3Store | None = None):
        self.settings = settings
        self.store = store or S3Store(settings)
        self.outbox = Outbox(runs_dir)

    def queue(self, *paths: Path) -> None:
        for path in paths:
            self.outbox.add(Path(path))

    def flush(self) -> SyncReport:
        """Upload what waits; stop at the first failure (the rest waits for the next flush)."""
        report = SyncReport()
        waiting = self.outbox.waiting()
        for index, path in enumerate(waiting):
            try:
                if path.is_dir():
                    report.uploaded += self.store.upload_run_dir(path)
                elif path.is_file():
                    report.uploaded.append(self.store.upload_file(path, path.name))
                # a path that no longer exists has nothing left to upload
            except S3Error as err:
                report.error = str(err)
                report.waiting = len(waiting) - index
                return report
            except OSError as err:  # a local file vanished or is unreadable mid-upload
                report.error = f"reading {path} for upload failed: {err}"
                report.waiting = len(waiting) - index
                return report
            self.outbox.remove(path)
        return report


@dataclass
class PullReport:
    """``costbo pull``: files written, files already identical, local files kept (differed)."""

    downloaded: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    kept_local: list[Path] = field(default_factory=list)


def pull(
    settings: S3Settings,
    dest: Path,
    *,
    journal: Path | None = None,
    force: bool = False,
    store: S3Store | None = None,
) -> PullReport:
    """Download ``experiments/<cluster>/`` into ``dest`` (the journal to ``journal`` if given).

    A local file that differs from S3 is kept unless ``force``: pulling never overwrites newer
    local results by surprise. Raises S3Error when nothing is stored there.
    """
    store = store or S3Store(settings)
    report = PullReport()
    keys = store.list_keys()
    if not keys:
        raise S3Error(
            f"nothing stored under s3://{settings.bucket}/{settings.prefix}: check [s3] bucket "
            "and cluster (the cluster names the folder the runs were uploaded to)"
        )
    dest = Path(dest)
    for key in keys:
        relative = key[len(settings.prefix) :]
        parts = relative.split("/")
        if not relative or relative.endswith("/") or any(p in ("", ".", "..") for p in parts):
            continue  # folder markers, or a key that would escape dest
        target = dest.joinpath(*parts)
        if journal is not None and len(parts) == 1 and parts[0] == journal.name:
            target = journal
        if target.exists():
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                fresh = Path(tmp) / target.name
                store.download(key, fresh)
                if fresh.read_bytes() == target.read_bytes():
                    report.unchanged.append(target)
                    continue
                if not force:
                    report.kept_local.append(target)
                    continue
                os.replace(fresh, target)
                report.downloaded.append(target)
            continue
        store.download(key, target)
        report.downloaded.append(target)
    return report
