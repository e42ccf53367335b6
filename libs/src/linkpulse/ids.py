"""Identifiers: UUIDv7 event ids (time ordered, so index inserts stay append-only) and base62 codes."""

from __future__ import annotations

import secrets
import zlib

import uuid_utils

__all__ = ["BASE62", "new_code", "new_event_id", "shard_for"]

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_event_id() -> str:
    """A fresh UUIDv7 as text; minted once per event, reused by every retry."""
    return str(uuid_utils.uuid7())


def new_code(length: int = 7) -> str:
    """A random base62 code; 62**7 ≈ 3.5e12, so collisions are rare and retried by the caller."""
    return "".join(secrets.choice(BASE62) for _ in range(length))


def shard_for(code: str, shards: int) -> int:
    """Stable shard of a code: CRC-32 is the same in every process and release, unlike `hash()`."""
    return zlib.crc32(code.encode()) % shards
