"""The bench's own figures: wrk's summary line parsed, the report's table, JSON and checks."""

from __future__ import annotations

import json

import pytest

from linkpulse.bench.copy_ceiling import CopyCeiling
from linkpulse.bench.counts import Published, Stored
from linkpulse.bench.report import BenchReport
from linkpulse.bench.run import BenchOptions
from linkpulse.bench.wrk import BenchError, WrkResult, parse_wrk_output

WRK_STDOUT = """\
Running 5s test @ http://127.0.0.1:8000
  2 threads and 64 connections
Requests/sec:  20000.00
LINKPULSE_BENCH_JSON {"duration_us": 5000000, "requests": 100000, "bytes": 1000, \
"errors": {"connect": 0, "read": 2, "write": 0, "status": 5, "timeout": 1}, \
"latency_us": {"p50": 1500, "p90": 2500, "p95": 3000, "p99": 8000, "p99.9": 9000, "max": 12000, "mean": 1700.5}}
"""


def test_wrk_summary_line_gives_requests_errors_and_latency_in_ms() -> None:
    result = parse_wrk_output(WRK_STDOUT)
    assert result.requests == 100_000 and result.duration_s == 5.0 and result.rps == 20_000
    assert result.bad_status == 5 and result.socket_errors == 3  # read 2 + timeout 1; status counts apart
    assert result.latency_ms["p99"] == 8.0 and result.latency_ms["max"] == 12.0


def test_wrk_output_without_the_summary_line_is_a_clear_error() -> None:
    with pytest.raises(BenchError, match="no summary line"):
        parse_wrk_output("unable to connect to 127.0.0.1:8000 Connection refused\n")


def _report() -> BenchReport:
    latency = {"p50": 1.0, "p90": 2.0, "p95": 3.0, "p99": 5.0, "p99.9": 6.0, "max": 9.0, "mean": 1.2}
    report = BenchReport(mode="pipeline", options={"mode": "pipeline", "links": 100})
    report.load = WrkResult(requests=50_000, duration_s=2.0, errors={"status": 0, "read": 0}, latency_ms=latency)
    report.ceiling = WrkResult(requests=200_000, duration_s=2.0, errors={}, latency_ms=latency)
    report.ceiling_workers = 2
    report.published = Published(messages=300, events=50_010, distinct=50_010)
    report.stored = Stored(rows=50_010, distinct=50_010, rollup_total=50_010)
    report.lag_s = 0.25
    return report


def test_ratio_is_our_throughput_over_the_nginx_ceiling() -> None:
    assert _report().ratio == pytest.approx(0.25)
    assert BenchReport(mode="ingest", options={}).ratio is None


def test_table_and_json_carry_the_same_figures() -> None:
    report = _report()
    report.check("every published click stored exactly once", True, "50,010")
    table = report.table()
    assert "requests/s" in table and "25,000" in table and "ratio to nginx" in table and "0.250" in table
    lines = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in table.splitlines() if "  " in line}
    assert lines["events stored (rows / distinct ids)"] == "50,010 / 50,010"
    assert lines["ingest lag at the end"] == "0.25 s" and lines["duplicates"] == "0"
    assert lines["nginx fixed 302 requests/s (2 workers)"] == "100,000"
    data = json.loads(report.to_json())
    assert data["load"]["requests_per_s"] == 25_000 and data["ratio_to_ceiling"] == 0.25
    assert data["ceiling_workers"] == 2
    assert data["stored"]["duplicates"] == 0 and data["ok"] is True
    assert data["machine"]["cpus"] >= 1


def test_one_failed_check_fails_the_run() -> None:
    report = _report()
    report.check("no errors", True, "")
    report.check("every published click stored exactly once", False, "published 10, rows 9")
    assert not report.ok
    assert "FAILED (published 10, rows 9)" in report.table()
    assert json.loads(report.to_json())["ok"] is False


def test_stored_duplicates_are_rows_beyond_distinct_ids() -> None:
    assert Stored(rows=12, distinct=10, rollup_total=12).duplicates == 2


def test_options_report_the_event_count_the_mode_runs_with() -> None:
    assert BenchOptions(mode="ingest").resolved().events == 2_000_000
    assert BenchOptions(mode="stats").resolved().events == 10_000_000
    assert BenchOptions(mode="ingest", events=3000).resolved().events == 3000
    assert BenchOptions(mode="redirect").resolved().events == 0  # publishes nothing beforehand


def test_ingest_rate_is_reported_as_a_share_of_the_raw_copy_of_the_same_rows() -> None:
    report = BenchReport(mode="ingest", options={"mode": "ingest"})
    report.ingest_events_per_s = 45_000.0
    assert report.ingest_ratio is None  # no ceiling measured (--no-ceiling): no ratio, never a made-up one
    report.copy_ceiling = CopyCeiling(rows=2_000_000, seconds=40.0)
    assert report.copy_ceiling.rows_per_s == 50_000.0 and report.ingest_ratio == pytest.approx(0.9)
    figures = json.loads(report.to_json())
    assert figures["copy_ceiling"] == {"rows": 2_000_000, "seconds": 40.0, "rows_per_s": 50_000.0}
    assert figures["ingest_ratio_to_copy"] == 0.9
    table = report.table().splitlines()
    lines = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in table if "  " in line}
    assert lines["raw COPY rows/s (same rows)"] == "50,000" and lines["ingest ratio to raw COPY"] == "0.900"
