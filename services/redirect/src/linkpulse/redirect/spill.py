"""The spill file: click envelopes NATS could not take, appended, fsynced, replayed later.

Segments are `spill-<pid>-<ns>.jsonl`, one JSON ClickBatch per line. A writer holds an flock on
its active segment, so another worker replaying the folder never reads a file still being written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgspec
import structlog

from linkpulse.events import ClickBatch, encode

__all__ = ["SpillFile"]

log = structlog.get_logger(__name__)
_decoder = msgspec.json.Decoder(ClickBatch)


class SpillFile:
    """Append-only segments in one folder; `sync()` makes appended lines durable."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._active: IO[bytes] | None = None
        self._active_path: Path | None = None
        self._dirty = False

    def append(self, batch: ClickBatch) -> None:
        """Append one envelope; durable after the next `sync()`."""
        if self._active is None:
            self._open()
        assert self._active is not None
        self._active.write(encode(batch) + b"\n")
        self._active.flush()
        self._dirty = True

    def sync(self) -> None:
        """fsync the active segment if anything was appended since the last sync."""
        if self._active is not None and self._dirty:
            os.fsync(self._active.fileno())
            self._dirty = False

    def close(self) -> None:
        """Sync and close the active segment, so it can be replayed."""
        if self._active is None:
            return
        self.sync()
        fcntl.flock(self._active.fileno(), fcntl.LOCK_UN)
        self._active.close()
        if self._active_path is not None and self._active_path.stat().st_size == 0:
            self._active_path.unlink(missing_ok=True)
        self._active = None
        self._active_path = None

    def size_bytes(self) -> int:
        """Bytes waiting in every segment of the folder."""
        if not self.directory.exists():
            return 0
        return sum(p.stat().st_size for p in self.directory.glob("spill-*.jsonl") if p.exists())

    def pending_segments(self) -> list[Path]:
        """Closed segments, oldest first (the active one is excluded)."""
        if not self.directory.exists():
            return []
        return sorted(p for p in self.directory.glob("spill-*.jsonl") if p != self._active_path)

    @contextlib.contextmanager
    def claim(self, segment: Path) -> Iterator[list[ClickBatch] | None]:
        """Lock a segment for replay and read it; yields None when another process holds it.

        The caller deletes the segment with `done()` after publishing everything in it.
        """
        try:
            handle = open(segment, "rb")  # noqa: SIM115 - closed below, after the lock
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            if not segment.exists():  # replayed and removed by another process meanwhile
                yield None
                return
            yield list(_read(segment, handle.read()))
        finally:
            handle.close()

    @staticmethod
    def done(segment: Path) -> None:
        segment.unlink(missing_ok=True)

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"spill-{time.time_ns():020d}-{os.getpid()}.jsonl"
        handle = open(path, "ab")  # noqa: SIM115 - kept open across appends
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        self._active, self._active_path = handle, path


def _read(segment: Path, data: bytes) -> Iterator[ClickBatch]:
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield _decoder.decode(line)
        except msgspec.DecodeError:
            # Only a torn last line from a killed process can look like this; it held no synced click.
            log.error("spill.corrupt_line", segment=segment.name, line=number, size=len(line))
