"""`linkpulse bench`: start the stack, load links, drive a mode with wrk, count what was stored, and report."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from linkpulse.bench.copy_ceiling import CHUNK_ROWS, copy_ceiling
from linkpulse.bench.counts import (
    ingest_backlog,
    placed_events,
    published_events,
    settled_last_seq,
    stored_events,
    stream_last_seq,
    wait_stored,
)
from linkpulse.bench.memory import cached_links, peak_rss_mb
from linkpulse.bench.nginx import find_nginx, nginx_ceiling, usable_cores
from linkpulse.bench.report import BenchReport
from linkpulse.bench.seed import create_links, publish_clicks, write_codes
from linkpulse.bench.stats_scenarios import SCENARIOS, TIMEOUT, ScenarioResult, filter_honoured, query_for, time_one
from linkpulse.bench.volume import seed_volume
from linkpulse.bench.wrk import BenchError, LoadSpec, find_wrk, run_wrk
from linkpulse.localstack.stack import Stack, StackInfo
from linkpulse.settings import StreamsSettings, from_env

__all__ = ["MODES", "BenchOptions", "run_bench"]

MODES = ("redirect", "pipeline", "ingest", "stats")
SEEDS = ("pipeline", "sql")

WEEK_MS = 7 * 86400 * 1000
DEFAULT_EVENTS = {"ingest": 2_000_000, "stats": 10_000_000}
"""Events pre-published when --events is not given, by mode.

Ingest's: about four batches of `batch_bytes` (8 MB, some 32,000 clicks) for each of the 16 shards, so
the rate is a sustained one. 500,000 was less than one batch a shard: each shard fetched its share and
stored it in one transaction, three at a time, which timed a start-up, not a rate (docs/performance.md).
"""
VOLUME_EVENTS = 100_000_000
"""The stats mode's default with `--seed sql`: the issue's 10^8 stored events for one link."""


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    """What one run does; the CLI's flags, one for one."""

    mode: str = "redirect"
    links: int = 20_000
    warm: float = 1.0
    """Share of the links requested once (HEAD, no click) per worker before the load: 1.0 is a hot cache."""
    zipf: float = 1.0
    duration: float = 30.0
    connections: int = 64
    threads: int = 2
    redirect_workers: int = 1
    """Redirect worker processes: 1, as `linkpulse up` and the chart run it (pods scale, not processes).

    On two cores with wrk on them, a second worker bought about a tenth more requests a second (the
    median of three alternating pairs) and two to three times the p99 (docs/performance.md): the two
    workers, wrk and NATS fight over the cores.
    """
    events: int = 0
    """Events pre-published in the ingest and stats modes (0: the mode's default, `DEFAULT_EVENTS`, or
    `VOLUME_EVENTS` for the stats mode seeded by SQL)."""
    seed: str = "pipeline"
    """How the stats mode stores its events: "pipeline" publishes them through NATS and ingest (a week of
    history, then the default window); "sql" writes them by SQL with bulk-built rollups (linkpulse.bench.volume,
    35 days) and measures the 30-day scenarios of linkpulse.bench.stats_scenarios."""
    rounds: int = 1
    """Times the stats mode's `--seed sql` scenarios are each measured, in alternation (medians: a noisy machine)."""
    ceiling: bool = True
    drain_timeout: float = 0.0
    """Seconds ingest may take, after the load, to store what was published before the run fails.

    0: 300, or in the ingest and stats modes one second per 5,000 events if that is longer (the stats
    mode's ten million events all go to one link's shard, so one shard loop stores them).
    """

    def resolved(self) -> BenchOptions:
        """These options with the mode's default event count filled in, so the report shows what ran."""
        default = VOLUME_EVENTS if self.mode == "stats" and self.seed == "sql" else DEFAULT_EVENTS.get(self.mode, 0)
        return replace(self, events=self.events or default)

    def drain_seconds(self, events: int = 0) -> float:
        """The drain timeout for a run storing `events` pre-published events."""
        return self.drain_timeout or max(300.0, events / 5_000)


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class _Run:
    """One run's stack, links and report; each mode is a method."""

    def __init__(self, options: BenchOptions, root: Path, environ: Mapping[str, str]) -> None:
        self.options = options
        self.root = root
        self.environ = dict(environ)
        self.shards = from_env(StreamsSettings, self.environ).clicks.shards
        self.report = BenchReport(mode=options.mode, options=asdict(options))
        self.stack: Stack | None = None
        self.links: list[tuple[str, int]] = []

    # ------------------------------------------------------------------ stack and links

    def start(self, services: tuple[str, ...]) -> Stack:
        workers = {
            "LINKPULSE_HTTP_WORKERS": str(self.options.redirect_workers),
            "LINKPULSE_HTTP_LOG_LEVEL": "warning",
            # The measured load wants every warmed link still cached: with a million links the warm-up alone
            # outlasts the default 5 minute TTL (which only bounds staleness after a missed change event).
            "LINKPULSE_CACHE_TTL": self.environ.get("LINKPULSE_CACHE_TTL", "3600"),
        }
        self.stack = Stack(
            self.root / "stack",
            self.environ,
            redirect_port=0,
            admin_port=0,
            ingest_port=0,
            services=services,
            service_environ={"redirect": workers, "ingest": {"LINKPULSE_INGEST_LOG_LEVEL": "warning"}},
        )
        _log(f"starting the stack in {self.stack.root} ({', '.join(services)})")
        self.stack.start()
        return self.stack

    @property
    def info(self) -> StackInfo:
        assert self.stack is not None and self.stack.info is not None
        return self.stack.info

    def load_links(self, count: int) -> Path:
        _log(f"creating {count:,} links through the admin API")
        started = time.monotonic()
        self.links = asyncio.run(create_links(self.info.admin_url, self.info.admin_key, self.info.database_url, count))
        _log(f"created {count:,} links in {time.monotonic() - started:.1f} s")
        return write_codes(self.root / "codes.txt", [code for code, _ in self.links])

    def spec(self, url: str, codes: Path, **changes: object) -> LoadSpec:
        base = LoadSpec(
            url=url,
            codes_file=codes,
            duration=self.options.duration,
            connections=self.options.connections,
            threads=self.options.threads,
            zipf=self.options.zipf,
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    def warm(self) -> None:
        """GET the warm share of the codes through every connection, so each worker process caches them.

        GET, not HEAD: wrk reads a HEAD answer's Content-Length as a body to wait for. The warm-up's clicks
        are real clicks, published and (in the pipeline mode) stored and counted like the others.
        """
        count = round(len(self.links) * self.options.warm)
        if count == 0:
            return
        warm_file = write_codes(self.root / "warm.txt", [code for code, _ in self.links[:count]])
        # Each worker process gets about 1/workers of the connections; enough passes that nearly every code
        # reaches every worker (a miss costs one Redis lookup during the load, nothing more).
        passes = 3 * self.options.redirect_workers
        per_thread = max(1, count * passes // self.options.threads)
        _log(f"warming {count:,} codes ({passes} passes)")
        spec = self.spec(self.info.redirect_url, warm_file, order="cycle", limit=per_thread,
                         duration=max(10.0, count * passes / 1000))  # fmt: skip
        result = run_wrk(spec)
        # Read errors are expected here: a thread that reached its limit stops with requests in flight.
        if result.bad_status or result.errors.get("connect") or result.requests < count:
            raise BenchError(f"warm-up failed: {result.requests:,} answers, {result.bad_status} bad, {result.errors}")

    def drive(self, codes: Path) -> tuple[int, int]:
        """Warm, then the measured load; returns the stream sequences before the warm-up and before the load."""
        nats_url = self.info.nats_url
        before_warm = asyncio.run(stream_last_seq(nats_url))
        self.warm()
        before_load = asyncio.run(settled_last_seq(nats_url))
        _log(f"load: {self.options.duration:.0f} s, {self.options.connections} connections, zipf {self.options.zipf}")
        self.report.load = run_wrk(self.spec(self.info.redirect_url, codes))
        return before_warm, before_load

    def memory(self, *names: str) -> None:
        assert self.stack is not None
        for name in names:
            proc = self.stack.services.get(name)
            self.report.memory_mb[name] = peak_rss_mb(proc.pid if proc is not None else None)

    def ceiling(self, codes: Path) -> None:
        if not self.options.ceiling:
            self.report.notes.append("ceiling not measured (--no-ceiling)")
            return
        # nginx at its best, one worker per core, whatever the redirect runs with: the ratio is to the machine.
        workers = self.report.ceiling_workers = usable_cores()
        _log(f"measuring the ceiling: nginx, {workers} workers, a fixed 302")
        with nginx_ceiling(self.root / "nginx", workers) as url:
            self.report.ceiling = run_wrk(self.spec(url, codes))

    def count_exactly_once(self, after_seq: int, *, wait: bool) -> float | None:
        """Published vs stored: every event published after `after_seq` stored once, and the rollups agree.

        With `wait`, first waits for ingest to store them all and returns the seconds that took.
        """
        report = self.report
        waited = None
        nats_url = self.info.nats_url
        asyncio.run(settled_last_seq(nats_url))
        everything = asyncio.run(published_events(nats_url, after_seq))
        ids = [link_id for _, link_id in self.links]
        if wait:
            _, waited = asyncio.run(wait_stored(self.info.database_url, ids, everything.distinct,
                                                      self.options.drain_seconds(everything.distinct)))  # fmt: skip
        report.check("events published once", everything.events == everything.distinct,
                     f"{everything.events:,} events, {everything.distinct:,} distinct ids")  # fmt: skip
        if wait:
            report.stored = stored = asyncio.run(stored_events(self.info.database_url, ids))
            report.check("every published click stored exactly once",
                         stored.rows == stored.distinct == everything.distinct and stored.rollup_total == stored.rows,
                         f"published {everything.distinct:,}, rows {stored.rows:,}, distinct {stored.distinct:,}, "
                         f"rollups {stored.rollup_total:,}")  # fmt: skip
        return waited

    def check_load(self, before_load: int | None = None) -> None:
        """No errors; with `before_load`, the server answered what wrk saw plus at most one request a connection."""
        load = self.report.load
        assert load is not None
        self.report.check("no errors", load.bad_status == 0 and load.socket_errors == 0,
                          f"status >= 400: {load.bad_status}, socket errors: {load.errors}")  # fmt: skip
        if before_load is None:
            return
        self.report.published = published = asyncio.run(published_events(self.info.nats_url, before_load))
        answered = load.requests - load.bad_status
        in_flight = published.distinct - answered
        # wrk stops at -d and forgets the requests in flight; the server answered them all the same.
        self.report.check("load tool and server agree", 0 <= in_flight <= self.options.connections,
                          f"{published.distinct:,} clicks published for {answered:,} answers wrk saw: "
                          f"{in_flight} in flight at its stop (at most {self.options.connections})")  # fmt: skip

    # ------------------------------------------------------------------ modes

    def redirect(self) -> None:
        """Redirect alone: hot cache, every click published to CLICKS, no ingest."""
        self.start(("admin", "redirect"))
        codes = self.load_links(self.options.links)
        assert self.stack is not None
        self.stack.stop_service("admin")  # its outbox relay would share the CPU with the measurement
        before_warm, before_load = self.drive(codes)
        self.memory("redirect")
        self.report.cached_links = cached_links(self.info.redirect_url)
        self.count_exactly_once(before_warm, wait=False)
        self.check_load(before_load)
        self.ceiling(codes)

    def pipeline(self) -> None:
        """Everything: redirect publishing, ingest storing, while the load runs; then the lag and the counts."""
        self.start(("ingest", "admin", "redirect"))
        codes = self.load_links(self.options.links)
        assert self.stack is not None
        self.stack.stop_service("admin")
        before_warm, before_load = self.drive(codes)
        self.report.backlog_at_end = asyncio.run(ingest_backlog(self.info.nats_url, self.shards))
        self.report.lag_s = self.count_exactly_once(before_warm, wait=True)
        self.memory("redirect", "ingest")
        self.report.cached_links = cached_links(self.info.redirect_url)
        self.check_load(before_load)
        self.ceiling(codes)

    def ingest(self) -> None:
        """Pre-published events drained by ingest as fast as it can (decode, enrich, insert, rollups)."""
        events = self.options.events
        self.start(("admin",))
        self.load_links(self.options.links)
        assert self.stack is not None
        self.stack.stop_service("admin")
        seq = asyncio.run(stream_last_seq(self.info.nats_url))
        _log(f"publishing {events:,} events")
        asyncio.run(publish_clicks(self.info.nats_url, self.links, events, self.shards))
        # The options table prints --zipf for every mode; say plainly that it shapes no event here.
        self.report.notes.append(f"events: round robin over the {len(self.links):,} links, the worst case for the "
                                 "rollups (--zipf shapes the redirect load only)")  # fmt: skip
        _log("starting ingest")
        spawned = time.monotonic()
        self.stack.start_service("ingest")  # returns once ingest is ready, its consumers bound
        ready = time.monotonic()
        rate, whole = asyncio.run(_drain_rate(self.info.database_url, [i for _, i in self.links], events,
                                              self.options.drain_seconds(events), spawned, ready))  # fmt: skip
        if whole:
            self.report.notes.append("ingest stored every event before it was seen ready: the rate is a lower "
                                     "bound that includes its start-up (publish more with --events)")  # fmt: skip
        self.report.ingest_events_per_s = rate
        self.memory("ingest")
        self.report.lag_s = self.count_exactly_once(seq, wait=True)
        if geoip := self.environ.get("LINKPULSE_GEOIP_DATABASE"):
            # The environment reaches ingest (LocalStack passes it on): say that the database was used.
            placed = asyncio.run(placed_events(self.info.database_url, [i for _, i in self.links]))
            self.report.notes.append(f"GeoIP on ({geoip}): {placed:,} of {events:,} clicks placed in a city")
        self.copy_ceiling()

    def copy_ceiling(self) -> None:
        """Ingest's ceiling: the rows it stored, COPYed straight into a scratch click_events by one connection."""
        if not self.options.ceiling:
            self.report.notes.append("raw COPY ceiling not measured (--no-ceiling)")
            return
        assert self.stack is not None
        self.stack.stop_service("ingest")  # idle by now; stopped so that the COPY has the machine to itself
        _log("measuring the ceiling: a raw COPY of the same rows")
        self.report.copy_ceiling = asyncio.run(copy_ceiling(self.info.database_url, [i for _, i in self.links]))
        self.report.notes.append(f"raw COPY ceiling: the rows ingest stored, {CHUNK_ROWS:,} per COPY and "
                                 "transaction, into a scratch copy of click_events (its indexes included)")  # fmt: skip

    def stats(self) -> None:
        """Latency of GET /api/v1/links/{code}/stats for one link holding many events (a week of history)."""
        events = self.options.events
        if self.options.seed == "sql":
            self.stats_at_volume()
            return
        self.start(("ingest", "admin"))
        codes = self.load_links(1)
        seq = asyncio.run(stream_last_seq(self.info.nats_url))
        _log(f"seeding {events:,} events on one link through the ingest path")
        asyncio.run(publish_clicks(self.info.nats_url, self.links, events, self.shards, spread_ms=WEEK_MS))
        # The seeding's drain, not a lag behind live traffic: a note, never "ingest lag at the end".
        seeded = self.count_exactly_once(seq, wait=True)
        self.report.notes.append(f"seeding: ingest stored the last events {seeded:.0f} s after publishing ended")
        _log("load: the stats endpoint (default window: 7 days by hour)")
        auth = f"Bearer {self.info.admin_key}"
        connections = min(self.options.connections, 16)
        spec = self.spec(self.info.admin_url, codes, prefix="/api/v1/links/", suffix="/stats", zipf=0.0,
                         auth=auth, connections=connections)  # fmt: skip
        self.report.load = run_wrk(spec)
        self.memory("admin", "ingest")
        self.check_load()

    def stats_at_volume(self) -> None:
        """The stats endpoint's 30-day scenarios on one link whose clicks and rollups were written by SQL."""
        events = self.options.events
        self.start(("admin",))  # no ingest: nothing is published, and the seeding wants both cores
        codes = self.load_links(1)
        code, link_id = self.links[0]
        _log(f"seeding {events:,} events on one link by SQL, rollups built in bulk")
        seed = asyncio.run(seed_volume(self.info.database_url, link_id, code, events, log=_log))
        self.report.seeding = seed
        self.report.check("seeded rollups agree with the seeded clicks", seed.consistent,
                          ", ".join(f"{k} {v:,}" for k, v in seed.sums.items()))  # fmt: skip
        self.report.notes.append(
            f"seeding: {seed.events:,} clicks over {seed.days} days written by SQL with the rollups built in bulk "
            "from them (as ingest's statement would add them), not through NATS and ingest: that would take "
            "about 45 minutes per 10^8 at ingest's rate (docs/performance.md)")  # fmt: skip
        auth = f"Bearer {self.info.admin_key}"
        connections = min(self.options.connections, 16)
        end = datetime.now(UTC)
        first = query_for(SCENARIOS[0], end)
        if not asyncio.run(filter_honoured(self.info.admin_url, auth, code, first)):
            self.report.notes.append("the admin ignored the filter (no filter support in this build): the "
                                     "filtered scenarios ran unfiltered; re-run once it has filters")  # fmt: skip
        # Rounds alternate the scenarios, so that a noisy minute on a shared machine touches each of them alike.
        for round_ in range(1, self.options.rounds + 1):
            for scenario in SCENARIOS:
                query = query_for(scenario, end)
                alone, status = asyncio.run(time_one(self.info.admin_url, auth, code, query))
                took = f"{alone:.1f} ms, HTTP {status}" if alone is not None else f"over {TIMEOUT:.0f} s"
                _log(f"load, round {round_}: {scenario.name} ({self.options.duration:.0f} s; one alone: {took})")
                spec = self.spec(self.info.admin_url, codes, prefix="/api/v1/links/", suffix=f"/stats?{query}",
                                 zipf=0.0, auth=auth, connections=connections, timeout=TIMEOUT)  # fmt: skip
                result = ScenarioResult(scenario, query, run_wrk(spec), alone, status, round_)
                self.report.scenarios.append(result)
                self.report.check(f"no errors: {scenario.name}, round {round_}", result.load.bad_status == 0
                                  and result.load.socket_errors == 0, f"status >= 400: {result.load.bad_status}, "
                                  f"socket errors: {result.load.errors}")  # fmt: skip
        self.memory("admin")


async def _drain_rate(
    database_url: str, link_ids: list[int], expected: int, timeout: float, spawned: float, ready: float
) -> tuple[float, bool]:
    """Events/s from ingest's readiness to the last event stored, and whether start-up had to be included.

    Ready means every shard's consumer is bound, so ingest is consuming: start-up (imports, connections)
    is left out. Counting from the first stored batch instead misled: with envelopes of 256 events, each
    shard's first batch holds thousands, so a short run's first count already held most of it. Events
    stored before readiness was seen are left out of the count as well; a run stored whole by then is
    divided by the time since `spawned` (monotonic) instead, start-up included.
    """
    at_ready, _ = await wait_stored(database_url, link_ids, 0, timeout)
    done, _ = await wait_stored(database_url, link_ids, expected, timeout)
    finished = time.monotonic()
    if done < expected:
        raise BenchError(f"ingest stored {done:,} of {expected:,} events in {timeout:.0f} s")
    if at_ready < done:
        return (done - at_ready) / (finished - ready), False
    return done / (finished - spawned), True


def run_bench(options: BenchOptions, root: Path, environ: Mapping[str, str] | None = None) -> BenchReport:
    """Run one bench mode in `root` (a fresh folder: the stack's data lives there) and return its report.

    Raises:
        BenchError: a tool is missing, or the stack misbehaved so that the figures would mean nothing.
    """
    if options.mode not in MODES:
        raise BenchError(f"unknown mode {options.mode!r}: one of {', '.join(MODES)}")
    if options.seed not in SEEDS or (options.seed != "pipeline" and options.mode != "stats"):
        raise BenchError(f"--seed {options.seed!r}: one of {', '.join(SEEDS)}, and only the stats mode seeds by SQL")
    if options.mode != "ingest":
        find_wrk()
    if options.ceiling and options.mode in {"redirect", "pipeline"}:
        find_nginx()
    run = _Run(options.resolved(), root, os.environ if environ is None else environ)
    try:
        getattr(run, options.mode)()
    finally:
        if run.stack is not None:
            _log("stopping the stack")
            run.stack.stop()
    return run.report
