"""The stats requests `linkpulse bench stats --seed sql` measures, each with its target (issue 21, "Speed at volume").

Each scenario is one query string, the same for every request of its wrk run, over the 30 days that end at the
last whole hour of the seeded history. Every answer carries the series' unique visitors, so scenario (c) is the
"unique visitors over 30 days" of the issue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple
from urllib.parse import urlencode

import httpx

from linkpulse.bench.wrk import BenchError, WrkResult

__all__ = ["SCENARIOS", "TIMEOUT", "Scenario", "ScenarioResult", "filter_honoured", "query_for", "time_one"]

WINDOW: Final = timedelta(days=30)
FILTER: Final = ("country", "DE")
"""The one-dimension filter of scenarios (a) and (b): a frequent value (14% of the seeded clicks)."""


class Scenario(NamedTuple):
    """One request shape and the p99 the issue asks of it."""

    name: str
    interval: str
    filtered: bool
    target_p99_ms: float


SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario("30 days by day, country=DE", "day", True, 50.0),
    Scenario("30 days by day, unique visitors, no filter", "day", False, 100.0),
    # Last: where a request outlasts wrk's timeout its query still runs in Postgres, and would slow the next run.
    Scenario("30 days by hour, country=DE", "hour", True, 50.0),
)
TIMEOUT: Final = 30.0
"""wrk's per-request timeout in these runs: a slow answer is measured, not counted as an error after 2 s."""


def query_for(scenario: Scenario, end: datetime) -> str:
    """The query string of `scenario` for the 30 days before `end` (floored to the hour), UTC with a `Z`."""
    to = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    params = {"from": _iso(to - WINDOW), "to": _iso(to), "interval": scenario.interval}
    if scenario.filtered:
        params[FILTER[0]] = FILTER[1]
    return urlencode(params)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario's wrk run and how its p99 compares with the target."""

    scenario: Scenario
    query: str
    load: WrkResult
    alone_ms: float | None = None
    """One request on its own (after one that warms the caches), before the load; None: over `TIMEOUT` s."""
    alone_status: int = 200
    """That request's HTTP status (0: no answer within `TIMEOUT` s)."""
    round: int = 1

    @property
    def p99_ms(self) -> float:
        return self.load.latency_ms.get("p99", float("nan"))

    @property
    def meets_target(self) -> bool:
        """The p99 within the target, and no request lost to a timeout or an error (wrk's latencies count those too)."""
        return self.p99_ms <= self.scenario.target_p99_ms and not self.load.socket_errors and not self.load.bad_status

    def to_dict(self) -> dict[str, Any]:
        lat = self.load.latency_ms
        return {
            "name": self.scenario.name,
            "round": self.round,
            "query": self.query,
            "requests": self.load.requests,
            "requests_per_s": round(self.load.rps, 1),
            "latency_ms": {k: round(v, 3) for k, v in lat.items()},
            "status_400_plus": self.load.bad_status,
            "socket_errors": self.load.errors,
            "alone_ms": round(self.alone_ms, 1) if self.alone_ms is not None else None,
            "alone_status": self.alone_status,
            "timeouts": self.load.errors.get("timeout", 0),
            "target_p99_ms": self.scenario.target_p99_ms,
            "meets_target": self.meets_target,
        }


async def filter_honoured(admin_url: str, auth: str, code: str, query: str) -> bool:
    """Whether the admin answers `query` (with the filter) otherwise than without it: a build without filter
    support ignores the parameter, and its "filtered" figures are then unfiltered requests."""
    unfiltered = "&".join(p for p in query.split("&") if not p.startswith(f"{FILTER[0]}="))
    answers = []
    async with httpx.AsyncClient(base_url=admin_url, headers={"Authorization": auth}, timeout=120) as client:
        for q in (query, unfiltered):
            resp = await client.get(f"/api/v1/links/{code}/stats?{q}")
            if resp.status_code != 200:
                raise BenchError(f"GET stats?{q}: HTTP {resp.status_code} {resp.text[:500]}")
            answers.append(resp.json()["series"])
    return answers[0] != answers[1]


async def time_one(admin_url: str, auth: str, code: str, query: str) -> tuple[float | None, int]:
    """Milliseconds and status of one request for `query` alone, the second of two (the first warms the caches).

    None and 0: no answer within `TIMEOUT`. A status other than 200 is returned, not raised: at volume the admin
    may give up on a query (its database command timeout, 10 s by default, answers 500), and that is a figure.
    """
    async with httpx.AsyncClient(base_url=admin_url, headers={"Authorization": auth}, timeout=TIMEOUT) as client:
        try:
            for _ in range(2):
                started = time.perf_counter()
                resp = await client.get(f"/api/v1/links/{code}/stats?{query}")
                elapsed = (time.perf_counter() - started) * 1000
        except httpx.TimeoutException:
            return None, 0
    return elapsed, resp.status_code
