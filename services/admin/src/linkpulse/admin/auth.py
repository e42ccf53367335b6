"""Bearer authentication by API key (SHA-256 lookup, constant-time check, throttled failures), scope guards."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import structlog
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException, TooManyRequestsException
from litestar.handlers.base import BaseRouteHandler

from linkpulse.admin.settings import AdminOptions
from linkpulse.admin.throttle import AuthThrottle
from linkpulse.apikeys import (
    ADMIN,
    KEY_PREFIX,
    LINKS_READ,
    LINKS_WRITE,
    SCOPES,
    STATS_READ,
    generate_key,
    has_scope,
    hash_key,
    key_prefix,
)
from linkpulse.db import apikeys as keys_db

# The key primitives live in `linkpulse.apikeys` (the CLI mints keys too); they are re-exported
# here so the admin code has one place to import auth from.
__all__ = [
    "ADMIN",
    "KEY_PREFIX",
    "LINKS_READ",
    "LINKS_WRITE",
    "SCOPES",
    "STATS_READ",
    "Principal",
    "authenticate",
    "authenticated",
    "ensure_bootstrap_key",
    "generate_key",
    "has_scope",
    "hash_key",
    "key_prefix",
    "requires",
]

# Generated keys are 46 characters; anything far longer is not a key and is not worth hashing.
_MAX_KEY_CHARS = 512
# last_used_at is a hint for operators; refreshing it at most once a minute saves a write per request.
_TOUCH_EVERY = timedelta(minutes=1)

log = structlog.get_logger(__name__)

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The API key a request authenticated with (never the key itself)."""

    key_id: int
    name: str
    prefix: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether this key may act with `scope`."""
        return has_scope(self.scopes, scope)


async def ensure_bootstrap_key(pool: asyncpg.Pool, options: AdminOptions) -> None:
    """Upsert the bootstrap admin key (`options.key`, by hash), so a fresh install has a way in.

    A key an operator revoked stays revoked: restarting with the same variable must not undo that.
    The key is read from `options` (whose repr hides it) and never bound to a local, so no
    traceback can show it.
    """
    if not options.key:
        return
    if len(options.key) < 32:
        log.warning(
            "auth.bootstrap_key_short",
            chars=len(options.key),
            hint="use 32+ random characters, or `linkpulse keys create`",
        )
    revoked = await keys_db.upsert_bootstrap(
        pool, name="bootstrap", prefix=key_prefix(options.key), key_hash=hash_key(options.key), scopes=[ADMIN]
    )
    if revoked:
        log.warning("auth.bootstrap_key_revoked", prefix=key_prefix(options.key))


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The Principal of the request's `Authorization: Bearer` key; 401 when missing or not valid.

    A client IP with too many recent failures gets 429 (with Retry-After) before any database lookup.
    The result is kept in the ASGI scope (`request.auth`), so several guards cost one lookup.
    """
    cached = connection.scope.get("auth")
    if isinstance(cached, Principal):
        return cached
    digest = _bearer_digest(connection.headers.get("authorization", ""))
    throttle: AuthThrottle = connection.app.state.throttle
    peer = connection.client.host if connection.client else ""
    ip = throttle.client_ip(peer, connection.headers.get("x-forwarded-for"))
    # A throttled client costs a Redis round trip, never a Postgres one, however fast it guesses.
    if wait := await throttle.retry_after(ip):
        raise TooManyRequestsException(
            f"too many failed authentications from this address; retry in {wait} s", headers={"Retry-After": str(wait)}
        )
    key = await _lookup(connection.app.state.db, digest)
    if isinstance(key, str):
        await throttle.failed(ip)
        raise _unauthorized(key)
    principal = Principal(key_id=key.id, name=key.name, prefix=key.prefix, scopes=frozenset(key.scopes))
    connection.scope["auth"] = principal
    connection.scope["user"] = principal.name
    return principal


async def _lookup(pool: asyncpg.Pool, digest: bytes | None) -> keys_db.ApiKeyRecord | str:
    """The key of `digest`, or why it does not authenticate."""
    if digest is None:
        return "invalid API key"
    # Read on every request, never cached across requests: a revocation or expiry applies to
    # the very next request.
    found = await keys_db.find_by_hash(pool, digest)
    # The lookup is by hash, so its timing says nothing about the key; the constant-time
    # comparison of what came back keeps it so however the database matched.
    if found is None or not hmac.compare_digest(found[1], digest):
        return "invalid API key"
    key = found[0]
    now = datetime.now(UTC)
    if key.revoked_at is not None:
        return "API key revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "API key expired"
    if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
        await keys_db.touch_last_used(pool, key.id)
    return key


def _unauthorized(detail: str) -> NotAuthorizedException:
    # RFC 6750: a 401 names the scheme the client should use.
    return NotAuthorizedException(detail, headers={"WWW-Authenticate": "Bearer"})


def _bearer_digest(authorization: str) -> bytes | None:
    # Only the hash leaves this frame: a traceback that shows locals of the lookup below
    # (rich tracebacks do) can never print the key. None: a key too long to be one (a failed attempt).
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        # Not an attempt at a key, so not counted as a failure: nothing was guessed.
        raise _unauthorized("missing API key: send `Authorization: Bearer <key>`")
    if len(key) > _MAX_KEY_CHARS:
        return None
    return hash_key(key)


async def authenticated(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: any valid key. Set on every API controller, so no handler is public by omission."""
    await authenticate(connection)


def requires(scope: str) -> Guard:
    """Guard factory: 401 without a valid key, 403 when the key lacks `scope` (`admin` has all)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = await authenticate(connection)
        if not principal.allows(scope):
            raise PermissionDeniedException(f"this API key lacks the {scope!r} scope")

    guard.__name__ = f"requires_{scope.replace(':', '_')}"
    return guard
