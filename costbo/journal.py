"""The study journal: append-only JSONL, one event per line, flushed and fsync'd per event.

Events: ``create`` (the full study config), ``ask`` (a trial), ``tell`` (its outcome) and
``cost_seed`` (a measured step time). Replaying them rebuilds a study exactly. A truncated last
line, the mark of a crash mid-write, is skipped with a warning and moved aside to
``<journal>.partial-<time>`` before anything new is appended. A process that writes holds an
exclusive ``flock`` on the file for as long as the journal is open, so two studies can never
interleave their events.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
import warnings
from pathlib import Path

FORMAT_VERSION = 1


class JournalError(RuntimeError):
    """A journal that cannot be read or written, with what to do about it."""


class JournalLocked(JournalError):
    """Another process (or another open Study) is writing this journal."""


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _clean(value):
    # numpy arrays and scalars (and tensors) as plain lists and numbers, so that their NaNs are
    # cleaned too and a curve in user_attrs is not refused as "not a Python scalar"
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        value = value.tolist()
    # JSON has no NaN/inf; a diverged run's NaN loss is stored as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def read_events(path: str | Path) -> tuple[list[dict], int]:
    """All complete events in the journal and the byte length of the valid prefix."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JournalError(f"journal {path} does not exist: check the path") from None
    except IsADirectoryError:
        raise JournalError(f"journal {path} is a directory: give the .jsonl file") from None
    events: list[dict] = []
    offset = 0
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        is_last = number == len(lines)
        if is_last and raw == b"":
            break
        if raw.strip() == b"":  # a blank line (e.g. left by removing a corrupt one) holds nothing
            offset += len(raw) + (0 if is_last else 1)
            continue
        try:
            event = json.loads(raw.decode("utf-8"))
            if not isinstance(event, dict) or "event" not in event:
                raise ValueError("not an event object")
        except (ValueError, UnicodeDecodeError) as err:
            if is_last:  # no newline after it: a write that a crash cut short
                warnings.warn(
                    f"journal {path}: skipping a truncated last line ({len(raw)} bytes), "
                    "the mark of a crash mid-write",
                    stacklevel=3,
                )
                break
            raise JournalError(
                f"journal {path} line {number} is corrupt ({err}); it is not the last line, so "
                "this is not a crash mid-write: restore the file from a copy (S3 sync keeps one) "
                "or remove that line by hand"
            ) from None
        events.append(event)
        # an unterminated but complete last event has no newline to count; repair_tail adds it
        offset += len(raw) + (0 if is_last else 1)
    if events and events[0].get("event") != "create":
        raise JournalError(f"journal {path} does not start with a 'create' event: not a journal")
    if not events and data.strip():
        raise JournalError(f"journal {path} holds no complete event: not a costbo journal")
    return events, offset


class Journal:
    """An open, locked journal file for appending events."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise JournalError(
                    f"cannot create the journal's folder {self.path.parent}: {err.strerror}"
                ) from None
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as err:
            raise JournalError(f"cannot open journal {self.path}: {err.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise JournalLocked(
                f"journal {self.path} is open for writing by another process or Study; stop "
                "that one (or call its close()) first, or open it read-only with "
                "Study.load(path, read_only=True)"
            ) from None

    def repair_tail(self, valid_length: int) -> None:
        """Move a truncated last line aside so that new events start on a fresh line."""
        size = os.fstat(self._fd).st_size
        if size > valid_length:
            with open(self.path, "rb") as f:
                f.seek(valid_length)
                tail = f.read()
            aside = self.path.with_name(f"{self.path.name}.partial-{int(time.time())}")
            aside.write_bytes(tail)
            os.ftruncate(self._fd, valid_length)
            os.fsync(self._fd)
        if valid_length > 0:
            with open(self.path, "rb") as f:
                f.seek(valid_length - 1)
                if f.read(1) != b"\n":  # a complete last event whose newline never landed
                    os.write(self._fd, b"\n")
                    os.fsync(self._fd)

    def append(self, event: dict) -> None:
        if self._fd is None:
            raise JournalError(f"journal {self.path} is closed")
        line = json.dumps(_clean(event), default=_json_default, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode("utf-8"))
        os.fsync(self._fd)

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:
        self.close()
