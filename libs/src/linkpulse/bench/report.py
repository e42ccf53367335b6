"""A bench run's figures: one table for people, the same figures as JSON for machines, and the checks."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from typing import Any

import psutil

from linkpulse.bench.copy_ceiling import CopyCeiling
from linkpulse.bench.counts import Published, Stored
from linkpulse.bench.stats_scenarios import ScenarioResult
from linkpulse.bench.volume import VolumeSeed
from linkpulse.bench.wrk import WrkResult

__all__ = ["BenchReport", "Check", "machine"]


@dataclass(frozen=True)
class Check:
    """One claim the run makes (exactly once, no errors, ...), whether it held, and the figures behind it."""

    name: str
    ok: bool
    detail: str


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "processor": platform.machine(),
    }


def _load(result: WrkResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "requests": result.requests,
        "seconds": round(result.duration_s, 2),
        "requests_per_s": round(result.rps, 1),
        "latency_ms": {k: round(v, 3) for k, v in result.latency_ms.items()},
        "status_400_plus": result.bad_status,
        "socket_errors": result.errors,
    }


def _copy(ceiling: CopyCeiling | None) -> dict[str, Any] | None:
    if ceiling is None:
        return None
    return {"rows": ceiling.rows, "seconds": round(ceiling.seconds, 3), "rows_per_s": round(ceiling.rows_per_s, 1)}


def _seeding(seed: VolumeSeed | None) -> dict[str, Any] | None:
    if seed is None:
        return None
    return {
        "events": seed.events,
        "days": seed.days,
        "method": "sql, rollups built in bulk from the seeded clicks",
        "seconds": round(seed.seconds, 1),
        "seconds_per_10m_events": round(seed.seconds_per_10m, 1),
        "analyze_seconds": round(seed.analyze_seconds, 1),
        "check_seconds": round(seed.check_seconds, 1),
        "sums": seed.sums,
        "consistent": seed.consistent,
        "table_bytes": seed.table_bytes,
        "database_bytes": seed.database_bytes,
        "bot_share": round(seed.bot_share, 4),
        "visitors_per_click": round(seed.visitors_per_click, 4),
    }


@dataclass
class BenchReport:
    """Everything one `linkpulse bench` run measured; `checks` are what it claims."""

    mode: str
    options: dict[str, Any]
    load: WrkResult | None = None
    ceiling: WrkResult | None = None
    ceiling_workers: int | None = None
    """nginx's worker processes for the ceiling (one per usable core)."""
    published: Published | None = None
    stored: Stored | None = None
    lag_s: float | None = None
    backlog_at_end: int | None = None
    ingest_events_per_s: float | None = None
    copy_ceiling: CopyCeiling | None = None
    """The ingest mode's ceiling: the same rows COPYed straight into a scratch copy of click_events."""
    seeding: VolumeSeed | None = None
    """The stats mode's SQL seeding (`--seed sql`): its time, disk and sums."""
    scenarios: list[ScenarioResult] = field(default_factory=list)
    """The stats mode's 30-day scenarios (`--seed sql`), each with its target."""
    memory_mb: dict[str, dict[str, float]] = field(default_factory=dict)
    cached_links: list[int] | None = None
    """Links cached per redirect worker at the end (distinct values its /metrics showed)."""
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """Our requests/s as a share of nginx's fixed 302 on the same machine, same load."""
        if self.load is None or self.ceiling is None or not self.ceiling.rps:
            return None
        return self.load.rps / self.ceiling.rps

    @property
    def ingest_ratio(self) -> float | None:
        """Ingest's events/s as a share of the raw COPY of the same rows, measured in the same run."""
        if self.ingest_events_per_s is None or self.copy_ceiling is None or not self.copy_ceiling.rows_per_s:
            return None
        return self.ingest_events_per_s / self.copy_ceiling.rows_per_s

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "options": self.options,
            "machine": machine(),
            "load": _load(self.load),
            "ceiling": _load(self.ceiling),
            "ceiling_workers": self.ceiling_workers,
            "ratio_to_ceiling": round(self.ratio, 4) if self.ratio is not None else None,
            "published": self.published.__dict__ if self.published else None,
            "stored": {**self.stored.__dict__, "duplicates": self.stored.duplicates} if self.stored else None,
            "ingest_lag_s": round(self.lag_s, 3) if self.lag_s is not None else None,
            "ingest_backlog_at_end": self.backlog_at_end,
            "ingest_events_per_s": round(self.ingest_events_per_s, 1) if self.ingest_events_per_s is not None else None,
            "copy_ceiling": _copy(self.copy_ceiling),
            "ingest_ratio_to_copy": round(self.ingest_ratio, 4) if self.ingest_ratio is not None else None,
            "seeding": _seeding(self.seeding),
            "stats_scenarios": [result.to_dict() for result in self.scenarios],
            "peak_memory_mb": self.memory_mb,
            "cached_links_per_worker": self.cached_links,
            "checks": [check.__dict__ for check in self.checks],
            "ok": self.ok,
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def table(self) -> str:
        """The run as rows of `figure  value`, the way the README and docs/performance.md quote them."""
        rows: list[tuple[str, str]] = [("mode", self.mode)]
        rows += [(key, str(value)) for key, value in self.options.items() if key != "mode"]
        if self.load is not None:
            lat = self.load.latency_ms
            rows += [
                ("requests/s", f"{self.load.rps:,.0f}"),
                ("latency p50/p95/p99/max", "/".join(f"{lat[k]:.2f}" for k in ("p50", "p95", "p99", "max")) + " ms"),
                ("answers with status >= 400", f"{self.load.bad_status:,}"),
                ("socket errors", ", ".join(f"{k} {v}" for k, v in self.load.errors.items() if k != "status")),
                ("answered (load tool)", f"{self.load.requests - self.load.bad_status:,}"),
            ]
        if self.ceiling is not None:
            workers = f" ({self.ceiling_workers} workers)" if self.ceiling_workers else ""
            rows += [(f"nginx fixed 302 requests/s{workers}", f"{self.ceiling.rps:,.0f}")]
            rows += [("ratio to nginx", f"{self.ratio:.3f}" if self.ratio is not None else "-")]
        if self.published is not None:
            rows += [("redirects answered (events published)", f"{self.published.distinct:,}")]
        if self.stored is not None:
            rows += [
                ("events stored (rows / distinct ids)", f"{self.stored.rows:,} / {self.stored.distinct:,}"),
                ("duplicates", f"{self.stored.duplicates:,}"),
                ("rollup total", f"{self.stored.rollup_total:,}"),
            ]
        if self.ingest_events_per_s is not None:
            rows += [("ingest events/s", f"{self.ingest_events_per_s:,.0f}")]
        if self.copy_ceiling is not None:
            rows += [("raw COPY rows/s (same rows)", f"{self.copy_ceiling.rows_per_s:,.0f}")]
            rows += [("ingest ratio to raw COPY", f"{self.ingest_ratio:.3f}" if self.ingest_ratio is not None else "-")]
        if self.lag_s is not None:
            rows += [("ingest lag at the end", f"{self.lag_s:.2f} s")]
        if self.backlog_at_end is not None:
            rows += [("ingest backlog at load end (messages)", f"{self.backlog_at_end:,}")]
        if (seed := self.seeding) is not None:
            rows += [
                ("seeding by SQL (clicks / days)", f"{seed.events:,} / {seed.days}"),
                ("seeding time, rollups included", f"{seed.seconds:,.0f} s ({seed.seconds_per_10m:,.0f} s per 10^7)"),
                ("seeding ANALYZE / check", f"{seed.analyze_seconds:,.0f} s / {seed.check_seconds:,.0f} s"),
                ("disk: click_events / database", f"{seed.table_bytes['click_events'] / 2**30:,.1f} GiB / "
                                                  f"{seed.database_bytes / 2**30:,.1f} GiB"),
                ("bots / visitors per click", f"{seed.bot_share:.3f} / {seed.visitors_per_click:.3f}"),
            ]  # fmt: skip
        for result in self.scenarios:
            lat = result.load.latency_ms
            verdict = "meets" if result.meets_target else "MISSES"
            alone = (
                f"{result.alone_ms:.1f} ms (HTTP {result.alone_status})" if result.alone_ms is not None else "timed out"
            )
            timeouts = result.load.errors.get("timeout", 0)
            rows += [(f"stats: {result.scenario.name}" + (f", round {result.round}" if len(self.scenarios) > 3 else ""),
                      f"{result.load.rps:,.1f} req/s, p50/p99 {lat.get('p50', 0):.1f}/{lat.get('p99', 0):.1f} ms, "
                      f"{timeouts} timeouts, {result.load.bad_status} >= 400, alone {alone}; "
                      f"{verdict} p99 <= {result.scenario.target_p99_ms:.0f} ms")]  # fmt: skip
        for service, peak in self.memory_mb.items():
            rows += [(f"peak RSS {service}", f"{peak['max']:.0f} MiB (all processes {peak['sum']:.0f} MiB)")]
        if self.cached_links:
            rows += [("links cached per redirect worker", " / ".join(f"{n:,}" for n in self.cached_links))]
        for check in self.checks:
            rows += [(f"check: {check.name}", ("ok" if check.ok else "FAILED") + f" ({check.detail})")]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)
