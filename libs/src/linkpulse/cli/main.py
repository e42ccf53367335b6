"""`linkpulse`: run the local stack, migrate, set up streams, manage API keys, reclassify bots, benchmark."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from linkpulse.cli import bench as bench_cli
from linkpulse.cli import keys as keys_cli
from linkpulse.cli import reclassify as reclassify_cli
from linkpulse.localstack.process import StartError
from linkpulse.logs import configure_logging, redact_url
from linkpulse.settings import SettingsError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linkpulse", description="Linkpulse: URL shortener with exact click analytics"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start NATS, Redis, PostgreSQL (from their wheels) and the three services")
    up.add_argument("--dir", type=Path, default=Path(".linkpulse"), help="state folder (default ./.linkpulse)")
    up.add_argument("--detach", action="store_true", help="start in the background and return; stop with `down`")
    up.add_argument("--redirect-port", type=int, default=8000, help="redirect port; a free one if taken (0: any)")
    up.add_argument("--admin-port", type=int, default=8001, help="admin port; a free one if taken (0: any)")
    up.add_argument("--ingest-port", type=int, default=9100,
                    help="ingest health and metrics port; a free one if taken (0: any)")  # fmt: skip

    down = sub.add_parser("down", help="stop a stack started with `up --detach`")
    down.add_argument("--dir", type=Path, default=Path(".linkpulse"), help="state folder (default ./.linkpulse)")

    migrate = sub.add_parser(
        "migrate",
        help="apply database migrations; with LINKPULSE_ROLES_<SERVICE>_PASSWORD "
        "also create or update each service's login role",
    )
    migrate.add_argument("--database-url", default=os.environ.get("LINKPULSE_DATABASE_URL"),
                         help="Postgres DSN (default $LINKPULSE_DATABASE_URL)")  # fmt: skip

    streams = sub.add_parser("streams", help="create or update the CLICKS and LINKS streams and consumers")
    streams.add_argument("--nats-url", default=os.environ.get("LINKPULSE_NATS_URL"),
                         help="NATS URL (default $LINKPULSE_NATS_URL)")  # fmt: skip

    keys_cli.add_parser(sub)
    reclassify_cli.add_parser(sub)
    bench_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `linkpulse` script; returns the process exit code."""
    args = _parser().parse_args(argv)
    configure_logging("warning")
    try:
        if args.command == "up":
            return _up(args)
        if args.command == "down":
            return _down(args)
        if args.command == "migrate":
            return _migrate(args)
        if args.command == "streams":
            return _streams(args)
        if args.command == "keys":
            return keys_cli.run(args)
        if args.command == "reclassify":
            return reclassify_cli.run(args)
        if args.command == "bench":
            return bench_cli.run(args)
    except (StartError, SettingsError) as exc:
        print(f"linkpulse {args.command}: {exc}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse rejects unknown commands first


def _up(args: argparse.Namespace) -> int:
    from linkpulse.localstack.access import PASSWORDS_FILE
    from linkpulse.localstack.stack import Stack
    from linkpulse.telemetry import tracing_summary

    stack = Stack(args.dir, os.environ, redirect_port=args.redirect_port, admin_port=args.admin_port,
                  ingest_port=args.ingest_port, quiet_services=True)  # fmt: skip
    print(f"starting the stack in {stack.root} ...", file=sys.stderr)
    info = stack.start()
    print(
        "Linkpulse is up.\n"
        f"  redirect  {info.redirect_url}\n"
        f"  admin     {info.admin_url}   (OpenAPI: {info.admin_url}/schema)\n"
        f"  admin key {info.admin_key}\n"
        f"  ingest    {info.ingest_url}/metrics   (probes: /healthz, /readyz)\n"
        f"  nats      {redact_url(info.nats_url)}\n"
        f"  redis     {redact_url(info.redis_url)}\n"
        f"  postgres  {redact_url(info.database_url)}\n"
        f"  passwords {stack.root / PASSWORDS_FILE}   (each service logs in as its own user)\n"
        f"  traces    {tracing_summary(stack.environ)}\n"
        f"  logs      {stack.logs}/\n"
        f"  state     {stack.root / 'stack.json'}\n\n"
        "Try it:\n"
        f"  curl -s -H 'Authorization: Bearer {info.admin_key}' -H 'Content-Type: application/json' \\\n"
        f'       -d \'{{"url": "https://example.com/"}}\' {info.admin_url}/api/v1/links',
        flush=True,
    )
    if args.detach:
        print(f"\ndetached: stop with `linkpulse down --dir {args.dir}`", flush=True)
        return 0
    print("\nCtrl-C stops everything (services first, so they drain).", flush=True)
    return stack.wait()


def _down(args: argparse.Namespace) -> int:
    from linkpulse.localstack.stack import down

    stopped = down(args.dir)
    if not stopped:
        print(f"linkpulse down: no running stack recorded in {args.dir / 'stack.json'}", file=sys.stderr)
        return 0
    print("stopped " + ", ".join(stopped))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from linkpulse.db.migrate import migrate
    from linkpulse.settings import MigrateSettings, from_env

    if not args.database_url:
        print("linkpulse migrate: give --database-url or set LINKPULSE_DATABASE_URL", file=sys.stderr)
        return 2
    passwords = from_env(MigrateSettings, os.environ).roles.passwords()
    applied = asyncio.run(migrate(args.database_url, passwords))
    print(f"applied {len(applied)} migration(s)" + (f": {applied}" if applied else ", database is current"))
    if passwords:
        print(f"login roles ready for {', '.join(sorted(passwords))}")
    return 0


def _streams(args: argparse.Namespace) -> int:
    from linkpulse.messaging.streams import ensure_streams_at
    from linkpulse.settings import StreamsSettings, from_env

    if not args.nats_url:
        print("linkpulse streams: give --nats-url or set LINKPULSE_NATS_URL", file=sys.stderr)
        return 2
    clicks = from_env(StreamsSettings, os.environ).clicks
    asyncio.run(ensure_streams_at(args.nats_url, clicks))
    print(f"streams CLICKS and LINKS ready, {clicks.shards} ingest consumers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
