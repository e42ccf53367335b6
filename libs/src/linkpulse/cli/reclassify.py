"""`linkpulse reclassify`: re-run today's bot rules over the stored clicks and rebuild the affected rollups.

Today's rules are the maintained ones plus the operator's `LINKPULSE_BOTS_PATTERNS`, read from the environment
as ingest reads them: run it with ingest's environment (in Kubernetes, in an ingest pod).

Online and idempotent (linkpulse.db.reclassify); the database is found as `linkpulse keys` finds it. It needs
the rights ingest has (0007_bot_rules.sql): run it as the ingest login, or as the owner that migrates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from tqdm import tqdm

from linkpulse.bots import BotRules, rules_from_settings
from linkpulse.cli.keys import iso_time, stack_database
from linkpulse.db.errors import UNAVAILABLE
from linkpulse.db.reclassify import CHUNK_PAGES, Outcome, reclassify
from linkpulse.logs import redact_url
from linkpulse.settings import BotSettings, SettingsError, from_env

__all__ = ["add_parser", "run"]

_CONNECT_TIMEOUT = 10.0
_MAX_CHUNK_PAGES = 1_000_000


def add_parser(sub: Any) -> None:
    """Add `reclassify` to the `linkpulse` subparsers `sub`."""
    parser = sub.add_parser(
        "reclassify",
        help="re-run the bot rules over stored clicks and rebuild the affected rollups (online, idempotent)",
    )
    parser.add_argument("--since", type=iso_time, help="only clicks from this time on (ISO 8601 or a date, UTC)")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON, without a progress bar")
    parser.add_argument("--chunk-pages", type=_chunk_pages, default=CHUNK_PAGES,
                        help=f"8 KiB pages per transaction (default {CHUNK_PAGES})")  # fmt: skip
    parser.add_argument("--database-url", help="Postgres DSN (default $LINKPULSE_DATABASE_URL, else the local stack's)")
    parser.add_argument(
        "--dir", type=Path, default=Path(".linkpulse"), help="local stack folder (default ./.linkpulse)"
    )


class _Settings(msgspec.Struct, frozen=True, kw_only=True):
    bots: BotSettings = BotSettings()


def run(args: argparse.Namespace, environ: Mapping[str, str] = os.environ, rules: BotRules | None = None) -> int:
    """Run `reclassify` with `rules`, by default those `LINKPULSE_BOTS_PATTERNS` gives ingest; returns the exit code."""
    if rules is None:
        try:
            rules = rules_from_settings(from_env(_Settings, environ).bots)
        except SettingsError as exc:
            print(f"linkpulse reclassify: {exc}", file=sys.stderr)
            return 2
    dsn = args.database_url or environ.get("LINKPULSE_DATABASE_URL") or stack_database(args.dir)
    if not dsn:
        print(
            "linkpulse reclassify: no database: give --database-url, set LINKPULSE_DATABASE_URL, "
            f"or start a local stack (`linkpulse up`; looked for {args.dir / 'stack.json'})",
            file=sys.stderr,
        )
        return 2
    try:
        outcome = asyncio.run(_run(dsn, args, rules))
    except asyncpg.UndefinedTableError:
        print("linkpulse reclassify: the database has no bot_rules table: run `linkpulse migrate` first",
              file=sys.stderr)  # fmt: skip
        return 1
    except asyncpg.InsufficientPrivilegeError as exc:
        print(f"linkpulse reclassify: {exc} (use the ingest login or the owner)", file=sys.stderr)
        return 1
    except UNAVAILABLE as exc:
        print(f"linkpulse reclassify: database {redact_url(dsn)}: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_as_json(outcome)))
    else:
        print(_summary(outcome))
    return 0


async def _run(dsn: str, args: argparse.Namespace, rules: BotRules) -> Outcome:
    conn = await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT)
    # Shown only on a terminal and without --json; tqdm prints the rate and the time left.
    bar = tqdm(total=0, unit=" clicks", file=sys.stderr, disable=args.json or not sys.stderr.isatty())

    def planned(outcome: Outcome) -> None:
        bar.set_description(f"moving the clicks of {outcome.changed_agents} user agent(s)", refresh=False)
        bar.reset(total=outcome.walked_clicks)

    try:
        return await reclassify(conn, rules, args.since, chunk_pages=args.chunk_pages, on_plan=planned,
                                progress=bar.update)  # fmt: skip
    finally:
        bar.close()
        await conn.close()


def _summary(outcome: Outcome) -> str:
    since = outcome.since.isoformat() if outcome.since is not None else "-"
    return (
        f"rules           {outcome.version}\n"
        f"clicks since    {since}\n"
        f"clicks read     {outcome.clicks} ({outcome.user_agents} user agents, {outcome.changed_agents} change class)\n"
        f"moved to bots   {outcome.to_bots}\n"
        f"moved to humans {outcome.to_humans}\n"
        f"took            {outcome.seconds:.1f} s ({outcome.rate:,.0f} clicks/s, {outcome.pages} pages walked)"
    )


def _as_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "rules": outcome.version,
        "since": outcome.since.isoformat() if outcome.since is not None else None,
        "clicks": outcome.clicks,
        "user_agents": outcome.user_agents,
        "changed_user_agents": outcome.changed_agents,
        "to_bots": outcome.to_bots,
        "to_humans": outcome.to_humans,
        "pages": outcome.pages,
        "seconds": round(outcome.seconds, 3),
    }


def _chunk_pages(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= _MAX_CHUNK_PAGES:
        raise argparse.ArgumentTypeError(f"must be 1 to {_MAX_CHUNK_PAGES}")
    return value
