"""`linkpulse bench MODE`: a benchmark of the whole system on this machine, nginx's fixed 302 beside it.

The stack is started in a folder of the run's own (servers from their wheels), unless
`LINKPULSE_NATS_URL` / `LINKPULSE_REDIS_URL` / `LINKPULSE_DATABASE_URL` point at running ones; either
way only what this run created is counted. Needs wrk (and nginx for the ceiling) on this machine.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    return parse


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def add_parser(sub: Any) -> None:
    """Add `bench` to the `linkpulse` subparsers `sub`."""
    from linkpulse.bench.run import MODES

    bench = sub.add_parser(
        "bench",
        help="benchmark redirects, the pipeline, ingest or stats on this machine (needs wrk and nginx)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("mode", choices=MODES, nargs="?", default="redirect",
                       help="redirect: redirect alone, clicks published; pipeline: everything, stored exactly once; "
                            "ingest: pre-published events drained; stats: the stats endpoint on a link with many "
                            "events (default redirect)")  # fmt: skip
    bench.add_argument("--links", type=_positive(int), default=20_000, help="links created (default 20000)")
    bench.add_argument("--warm", type=_share, default=1.0,
                       help="share of the links cached before the load, by HEAD requests (default 1.0)")  # fmt: skip
    bench.add_argument("--zipf", type=float, default=1.0,
                       help="popularity exponent: rank r gets 1/r^s of the load; 0: uniform (default 1)")  # fmt: skip
    bench.add_argument("--duration", type=_positive(float), default=30.0, help="seconds of load (default 30)")
    bench.add_argument("--connections", type=_positive(int), default=64, help="open connections (default 64)")
    bench.add_argument("--threads", type=_positive(int), default=2, help="wrk threads (default 2)")
    bench.add_argument("--redirect-workers", type=_positive(int), default=1,
                       help="redirect worker processes (default 1, as `linkpulse up` runs it; nginx's ceiling "
                            "always runs one worker per core)")  # fmt: skip
    bench.add_argument("--events", type=int, default=0,
                       help="events pre-published: ingest (default 2000000), stats (default 10000000; with --seed sql, "
                            "100000000 written by SQL)")  # fmt: skip
    bench.add_argument("--seed", choices=("pipeline", "sql"), default="pipeline",
                       help="stats mode: 'pipeline' publishes the events through NATS and ingest (a week, the "
                            "default window); 'sql' writes them by SQL with bulk-built rollups (35 days, default "
                            "100000000 events) and measures the 30-day scenarios against the issue's targets "
                            "(default pipeline)")  # fmt: skip
    bench.add_argument("--rounds", type=_positive(int), default=1,
                       help="stats --seed sql: runs of each scenario, in alternation (default 1)")  # fmt: skip
    bench.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                       help="skip the nginx fixed-302 ceiling")  # fmt: skip
    bench.add_argument("--drain-timeout", type=_positive(float), default=0.0,
                       help="seconds ingest may take to store everything after the load (default 300, or "
                            "a second per 5,000 events if longer)")  # fmt: skip
    bench.add_argument("--json", type=Path, help="also write the figures as JSON to this file ('-': stdout)")
    bench.add_argument("--dir", type=Path,
                       help="folder for the run's stack and logs (default: a temporary one, then removed)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run the bench; 0 when every check held, 1 when one failed, 2 when it could not run."""
    from linkpulse.bench.run import BenchOptions, run_bench
    from linkpulse.bench.wrk import BenchError

    options = BenchOptions(
        mode=args.mode,
        links=args.links,
        warm=args.warm,
        zipf=args.zipf,
        duration=args.duration,
        connections=args.connections,
        threads=args.threads,
        redirect_workers=args.redirect_workers,
        events=args.events,
        seed=args.seed,
        rounds=args.rounds,
        ceiling=args.ceiling,
        drain_timeout=args.drain_timeout,
    )
    root = args.dir or Path(tempfile.mkdtemp(prefix="linkpulse-bench-"))
    # A SIGTERM (`timeout`, a CI job's end, kill) unwinds like Ctrl-C, through run_bench's `finally`, so the
    # run's stack is stopped rather than left running with its servers and data.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = run_bench(options, root)
    except BenchError as exc:
        print(f"linkpulse bench: {exc}", file=sys.stderr)
        print(f"linkpulse bench: logs in {root / 'stack' / 'logs'}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("linkpulse bench: interrupted; the run's stack is stopped", file=sys.stderr)
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
        return 130
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    print(report.table())
    if args.json is not None:
        if str(args.json) == "-":
            sys.stdout.write(report.to_json())
        else:
            args.json.write_text(report.to_json())
    return 0 if report.ok else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
