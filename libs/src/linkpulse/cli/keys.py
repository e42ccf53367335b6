"""`linkpulse keys create|list|revoke`: API keys straight in the database, stored hashed, shown once.

The database is `--database-url`, else `$LINKPULSE_DATABASE_URL`, else the one in the
`stack.json` of a local stack (`--dir`, default `.linkpulse`), so after `linkpulse up` no flag
is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from linkpulse.apikeys import SCOPES, generate_key, hash_key, key_prefix, normalize_scopes, validate_name
from linkpulse.db.apikeys import ApiKeyRecord, insert_key, list_keys, revoke_key
from linkpulse.db.errors import UNAVAILABLE
from linkpulse.logs import redact_url

__all__ = ["add_parser", "iso_time", "run", "stack_database"]

_CONNECT_TIMEOUT = 10.0
Action = Callable[[asyncpg.Connection, argparse.Namespace], Awaitable[int]]


def add_parser(sub: Any) -> None:
    """Add `keys` and its subcommands to the `linkpulse` subparsers `sub`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="Postgres DSN (default $LINKPULSE_DATABASE_URL, else the local stack's)")
    common.add_argument(
        "--dir", type=Path, default=Path(".linkpulse"), help="local stack folder (default ./.linkpulse)"
    )

    keys = sub.add_parser("keys", help="create, list and revoke admin API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True)

    create = actions.add_parser("create", parents=[common], help="create a key; prints it once")
    create.add_argument("--name", required=True, type=_name, help="who or what uses the key (1-100 characters)")
    create.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        required=True,
        choices=sorted(SCOPES),
        help="a scope to grant; repeat for several (admin implies all)",
    )
    create.add_argument("--expires", type=iso_time, help="expiry, ISO 8601 with a timezone or a date (midnight UTC)")
    create.add_argument("--json", action="store_true", help="print the key and its record as JSON")

    listing = actions.add_parser("list", parents=[common], help="list keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="print JSON")

    revoke = actions.add_parser("revoke", parents=[common], help="revoke a key at once")
    revoke.add_argument("id", type=int, help="the key's id (see `linkpulse keys list`)")


def run(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """Run a `keys` subcommand; returns the exit code."""
    command = f"linkpulse keys {args.keys_command}"
    dsn = args.database_url or environ.get("LINKPULSE_DATABASE_URL") or stack_database(args.dir)
    if not dsn:
        print(
            f"{command}: no database: give --database-url, set LINKPULSE_DATABASE_URL, "
            f"or start a local stack (`linkpulse up`; looked for {args.dir / 'stack.json'})",
            file=sys.stderr,
        )
        return 2
    actions: dict[str, Action] = {
        "create": _create,
        "list": _list,
        "revoke": _revoke,
    }
    try:
        return asyncio.run(_with_connection(dsn, actions[args.keys_command], args))
    except asyncpg.UndefinedTableError:
        print(f"{command}: the database has no api_keys table: run `linkpulse migrate` first", file=sys.stderr)
    except UNAVAILABLE as exc:
        print(f"{command}: database {redact_url(dsn)}: {str(exc) or type(exc).__name__}", file=sys.stderr)
    return 1


async def _with_connection(dsn: str, action: Action, args: argparse.Namespace) -> int:
    conn = await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT)
    try:
        return await action(conn, args)
    finally:
        await conn.close()


async def _create(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    if args.expires is not None and args.expires <= datetime.now(UTC):
        print("linkpulse keys create: --expires must be in the future", file=sys.stderr)
        return 2
    key = generate_key()
    record = await insert_key(
        conn,
        name=args.name,
        prefix=key_prefix(key),
        key_hash=hash_key(key),
        scopes=normalize_scopes(args.scopes),
        expires_at=args.expires,
    )
    if args.json:
        print(json.dumps({**_as_json(record), "key": key}))
    else:
        print(f"id       {record.id}")
        print(f"name     {record.name}")
        print(f"prefix   {record.prefix}")
        print(f"scopes   {' '.join(record.scopes)}")
        print(f"expires  {_when(record.expires_at, 'never')}")
        print(f"key      {key}")
    print("Store the key now: it is shown only this once (only its SHA-256 is kept).", file=sys.stderr)
    return 0


async def _list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    records = await list_keys(conn)
    if args.json:
        print(json.dumps([_as_json(r) for r in records]))
        return 0
    if not records:
        print("no API keys")
        return 0
    now = datetime.now(UTC)
    header = ("ID", "NAME", "PREFIX", "SCOPES", "STATUS", "CREATED", "EXPIRES", "LAST USED")
    rows = [
        (
            str(r.id),
            r.name,
            r.prefix,
            ",".join(r.scopes),
            "revoked" if r.revoked_at else "expired" if r.expires_at and r.expires_at <= now else "active",
            _when(r.created_at, ""),
            _when(r.expires_at, "never"),
            _when(r.last_used_at, "never"),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


async def _revoke(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    revocation = await revoke_key(conn, args.id)
    if revocation is None:
        print(f"linkpulse keys revoke: no API key with id {args.id}", file=sys.stderr)
        return 1
    key = revocation.key
    if revocation.already_revoked:
        print(f"API key {key.id} ({key.prefix}, {key.name!r}) was already revoked at {_when(key.revoked_at, '')}")
    else:
        print(f"revoked API key {key.id} ({key.prefix}, {key.name!r}): it is refused from now on")
    return 0


def _name(text: str) -> str:
    try:
        return validate_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def iso_time(text: str) -> datetime:
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date or time: {text!r} (try 2027-01-31 or 2027-01-31T12:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a timezone, such as {value}Z or {value}+01:00")
    return parsed.astimezone(UTC)


def stack_database(root: Path) -> str | None:
    from linkpulse.localstack.stack import read_info

    try:
        info = read_info(root)
    except (OSError, ValueError, TypeError):
        return None
    return info.database_url if info is not None else None


def _when(ts: datetime | None, missing: str) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ts is not None else missing


def _as_json(record: ApiKeyRecord) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(record)
    return data
