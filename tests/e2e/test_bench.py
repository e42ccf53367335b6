"""`linkpulse bench` as a user runs it: a short pipeline run whose own counting is checked, and its errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linkpulse.bench.nginx import nginx_ceiling, usable_cores
from linkpulse.bench.wrk import LoadSpec, run_wrk
from linkpulse.localstack.process import pid_alive
from linkpulse.localstack.stack import read_info

pytestmark = pytest.mark.slow

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without LINKPULSE_* URLs of the caller's, so the bench starts servers from their wheels."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LINKPULSE_", "OTEL_"))}
    return {**clean, **(env or {})}


def bench(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `linkpulse bench` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "linkpulse.cli.main", "bench", *args],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@needs_wrk
def test_short_pipeline_run_counts_every_answered_redirect_stored_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    ceiling = [] if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() else ["--no-ceiling"]
    result = bench("pipeline", "--links", "300", "--duration", "3", "--connections", "8", "--redirect-workers", "1",
                   "--json", str(out), "--dir", str(tmp_path / "run"), *ceiling)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    # The figures the table prints are the JSON's.
    assert "requests/s" in result.stdout and "check: every published click stored exactly once  ok" in result.stdout
    load, published, stored = report["load"], report["published"], report["stored"]
    assert load["requests"] > 0 and load["status_400_plus"] == 0
    # Warm-up and load clicks, each published once and stored once, rollups included.
    assert published["events"] == published["distinct"]
    assert stored["rows"] == stored["distinct"] == stored["rollup_total"] >= load["requests"]
    assert stored["duplicates"] == 0
    assert report["ingest_lag_s"] is not None and report["ingest_backlog_at_end"] is not None
    assert {c["name"] for c in report["checks"]} >= {"no errors", "load tool and server agree",
                                                      "every published click stored exactly once"}  # fmt: skip
    assert all(c["ok"] for c in report["checks"]) and report["ok"] is True
    assert report["peak_memory_mb"]["redirect"]["max"] > 10 and report["peak_memory_mb"]["ingest"]["max"] > 10
    assert report["cached_links_per_worker"] == [300]  # one worker, every link warmed and still cached
    if not ceiling:
        assert report["ceiling"]["requests_per_s"] > 0 and report["ratio_to_ceiling"] > 0
        assert report["ceiling_workers"] == usable_cores()  # nginx at its best, not at the redirect's count
    # The run's folder keeps the logs and the codes it loaded.
    assert len((tmp_path / "run" / "codes.txt").read_text().split()) == 300


def test_bad_options_are_named_and_start_nothing(tmp_path: Path) -> None:
    result = bench("--warm", "2", "--dir", str(tmp_path))
    assert result.returncode == 2 and "--warm" in result.stderr and "between 0 and 1" in result.stderr
    result = bench("--duration", "0")
    assert result.returncode == 2 and "--duration" in result.stderr
    result = bench("nosuchmode")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_missing_load_tool_is_explained_before_anything_starts(tmp_path: Path) -> None:
    result = bench("redirect", "--dir", str(tmp_path / "run"), env={"PATH": str(tmp_path)})
    assert result.returncode == 2
    assert "wrk is not on PATH" in result.stderr and "apt-get install wrk" in result.stderr
    assert not (tmp_path / "run" / "stack").exists()


def test_ingest_mode_drains_pre_published_events_and_reports_its_rate(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = bench("ingest", "--links", "50", "--events", "3000", "--json", str(out), "--dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["published"] is None  # this mode publishes the events itself; no redirect answers
    assert report["stored"] == {"rows": 3000, "distinct": 3000, "rollup_total": 3000, "duplicates": 0}
    assert report["ingest_events_per_s"] > 0 and report["ok"] is True
    assert "ingest events/s" in result.stdout
    # The figure depends on how events spread over links; the report says how, since --zipf does not apply.
    assert "events: round robin over the 50 links, the worst case for the rollups" in " ".join(report["notes"])


def test_ingest_mode_compares_its_rate_with_a_raw_copy_of_the_same_rows(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = bench("ingest", "--links", "20", "--events", "2000", "--json", str(out), "--dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    # The same rows, every one ingest stored, COPYed straight into a scratch click_events.
    assert report["copy_ceiling"]["rows"] == report["stored"]["rows"] == 2000
    assert report["copy_ceiling"]["rows_per_s"] > 0
    ratio = report["ingest_events_per_s"] / report["copy_ceiling"]["rows_per_s"]
    # The report rounds the ratio to four decimals, so a small ratio (a short run) is only that close.
    assert report["ingest_ratio_to_copy"] == pytest.approx(ratio, abs=1e-4)
    assert "raw COPY rows/s (same rows)" in result.stdout and "ingest ratio to raw COPY" in result.stdout


@needs_wrk
def test_stats_mode_seeds_one_link_and_measures_its_stats_endpoint(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = bench("stats", "--events", "3000", "--duration", "2", "--connections", "4", "--json", str(out),
                   "--dir", str(tmp_path / "run"))  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["stored"] == {"rows": 3000, "distinct": 3000, "rollup_total": 3000, "duplicates": 0}
    load = report["load"]
    assert load["requests"] > 0 and load["status_400_plus"] == 0 and report["ok"] is True
    # The seeding's drain is a note, never printed as a lag behind live traffic.
    assert report["ingest_lag_s"] is None
    assert any(note.startswith("seeding: ingest stored the last events") for note in report["notes"])


@needs_wrk
def test_stats_mode_seeded_by_sql_measures_the_30_day_scenarios_against_their_targets(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = bench("stats", "--seed", "sql", "--events", "20000", "--duration", "1", "--connections", "2",
                   "--json", str(out), "--dir", str(tmp_path / "run"))  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    seeding = report["seeding"]
    assert seeding["events"] == seeding["sums"]["clicks"] == seeding["sums"]["link_clicks_day"] == 20000
    assert seeding["consistent"] is True and seeding["database_bytes"] > seeding["table_bytes"]["click_events"] > 0
    assert "rollups built in bulk" in seeding["method"] and report["stored"] is None  # nothing went through ingest
    scenarios = report["stats_scenarios"]
    assert [(s["name"], s["target_p99_ms"]) for s in scenarios] == [
        ("30 days by day, country=DE", 50.0),
        ("30 days by day, unique visitors, no filter", 100.0),
        ("30 days by hour, country=DE", 50.0),
    ]
    for s in scenarios:
        assert s["requests"] > 0 and s["status_400_plus"] == 0 and s["alone_status"] == 200
        assert s["meets_target"] == (s["latency_ms"]["p99"] <= s["target_p99_ms"])
    assert "country=DE" in scenarios[0]["query"] and "interval=hour" in scenarios[2]["query"]
    assert "country=" not in scenarios[1]["query"]
    assert "MISSES p99 <= 50 ms" in result.stdout or "meets p99 <= 50 ms" in result.stdout
    # SQL seeding is the stats mode's alone; asked of another mode, nothing starts.
    refused = bench("ingest", "--seed", "sql", "--dir", str(tmp_path / "other"))
    assert refused.returncode == 2 and "only the stats mode seeds by SQL" in refused.stderr
    assert not (tmp_path / "other" / "stack").exists()


def test_sigterm_stops_the_runs_whole_stack(tmp_path: Path) -> None:
    """A `timeout` or a CI job ending the bench must not leave its servers and services running."""
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "linkpulse.cli.main", "bench", "ingest", "--links", "20", "--events", "5000000",
            "--dir", str(run)]  # fmt: skip
    with subprocess.Popen(argv, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            seen = []
            for line in proc.stderr:  # the stack is up once the bench publishes (five million events: many seconds)
                seen.append(line)
                if "publishing" in line:
                    break
            else:
                raise AssertionError("the bench ended before publishing: " + "".join(seen)[-3000:])
            info = read_info(run / "stack")
            assert info is not None
            running = [pid for pid in info.pids.values() if pid and pid_alive(pid)]
            assert len(running) >= 3  # nats, redis and postgres at least (this mode has stopped admin by now)
            proc.terminate()
            _, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in err
    assert [pid for pid in running if pid_alive(pid)] == []


@needs_wrk
@pytest.mark.skipif(not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()), reason="nginx is not installed")
@pytest.mark.timeout(120)
def test_a_limited_load_ends_when_every_thread_reaches_its_limit(tmp_path: Path) -> None:
    """The warm-up's shape: wrk would otherwise idle out its whole -d (100 minutes for a million links)."""
    codes = tmp_path / "codes.txt"
    codes.write_text("".join(f"c{i}\n" for i in range(50)))
    with nginx_ceiling(tmp_path / "nginx", workers=1) as url:
        # -d far beyond the test's timeout: only the limit can end this run in time.
        spec = LoadSpec(url=url, codes_file=codes, duration=3600, connections=4, threads=2, order="cycle", limit=500)
        result = run_wrk(spec)
    assert 2 * 500 <= result.requests < 2 * 500 + 4 * 2  # each thread's limit, plus what was in flight
    assert result.bad_status == 0
