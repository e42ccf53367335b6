"""Request metrics: one series per route template, method and status; a histogram that agrees with the counter."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from litestar import Litestar, Response, get, route
from litestar.params import FromPath
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families

from linkpulse.web import ServicePlugin
from linkpulse.web.request_metrics import BUCKETS, REQUEST_METRICS, RequestMetrics, RequestMetricsMiddleware

Key = tuple[str, str, str]


@route("/{code:str}", http_method=["GET", "HEAD"], sync_to_thread=False)
def by_code(code: FromPath[str]) -> Response[None]:
    return Response(None, status_code=302 if code != "gone" else 410, headers={"location": "https://example.com/"})


@get("/api/v1/links/{code:str}/fail", sync_to_thread=False)
def fail(code: FromPath[str]) -> None:
    raise RuntimeError("boom")


def _app() -> Litestar:
    return Litestar([by_code, fail], plugins=[ServicePlugin()], openapi_config=None, logging_config=None)


def _counts(collector: RequestMetrics) -> dict[str, dict[Key, float]]:
    """A collector's exposition by sample name, then (route, method, status), or (route, status, le) for buckets."""
    registry = CollectorRegistry()
    registry.register(collector)
    out: dict[str, dict[Key, float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            labels = s.labels
            third = ("status", "le") if "le" in labels else ("method", "status")
            out.setdefault(s.name, {})[(labels["route"], labels[third[0]], labels[third[1]])] = s.value
    return out


def _delta(before: dict[str, dict[Key, float]], after: dict[str, dict[Key, float]], name: str) -> dict[Key, float]:
    old = before.get(name, {})
    return {k: v - old.get(k, 0) for k, v in after.get(name, {}).items() if v != old.get(k, 0)}


@pytest.fixture
def client() -> Any:
    with TestClient(_app(), raise_server_exceptions=False) as c:
        yield c


def test_requests_are_counted_by_route_template_method_and_status_never_by_raw_path(client: Any) -> None:
    # The process-wide collector (what /metrics serves) is shared with other tests: compare before and after.
    before = _counts(REQUEST_METRICS)
    for code in ("abc", "def", "xyz"):
        client.get(f"/{code}", follow_redirects=False)
    client.head("/abc", follow_redirects=False)
    client.get("/gone")
    client.get("/a/b/c")  # no route: 404 from the router
    client.post("/abc")  # no route for POST: 405 from the router
    client.request("BREW", "/abc")  # a method nobody defined
    client.get("/api/v1/links/abc/fail")  # the handler raises: 500
    after = _counts(REQUEST_METRICS)

    assert _delta(before, after, "linkpulse_http_requests_total") == {
        ("/{code}", "GET", "302"): 3,
        ("/{code}", "HEAD", "302"): 1,
        ("/{code}", "GET", "410"): 1,
        ("unmatched", "GET", "404"): 1,
        ("unmatched", "POST", "405"): 1,
        ("unmatched", "other", "405"): 1,
        ("/api/v1/links/{code}/fail", "GET", "500"): 1,
    }
    # The histogram counts the same requests.
    assert _delta(before, after, "linkpulse_http_request_duration_seconds_count") == _delta(
        before, after, "linkpulse_http_requests_total"
    )


def test_metrics_endpoint_serves_both_families() -> None:
    with TestClient(_app()) as c:
        c.get("/abc", follow_redirects=False)
        text = c.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["linkpulse_http_requests"].type == "counter"
    assert families["linkpulse_http_request_duration_seconds"].type == "histogram"
    assert {s.labels["route"] for s in families["linkpulse_http_requests"].samples} >= {"/{code}"}


def test_a_second_lifespan_does_not_count_requests_twice() -> None:
    app = _app()
    for _ in range(2):
        with TestClient(app) as c:
            before = _counts(REQUEST_METRICS)
            c.get("/once", follow_redirects=False)
            after = _counts(REQUEST_METRICS)
        assert _delta(before, after, "linkpulse_http_requests_total") == {("/{code}", "GET", "302"): 1}
    assert isinstance(app.asgi_handler, RequestMetricsMiddleware)
    assert not isinstance(app.asgi_handler.app, RequestMetricsMiddleware)


def test_histogram_buckets_are_cumulative_and_bounds_inclusive() -> None:
    metrics = RequestMetrics()
    for seconds in (BUCKETS[0], BUCKETS[0] * 1.01, 0.02, 60.0):
        metrics.observe("/{code}", "GET", 302, seconds)
    buckets = _counts(metrics)["linkpulse_http_request_duration_seconds_bucket"]
    le = {key[2]: value for key, value in buckets.items()}
    assert le["0.0001"] == 1  # a value equal to a bound falls in that bound's bucket
    assert le["0.00025"] == 2
    assert le["0.01"] == 2 and le["0.025"] == 3
    assert le["10.0"] == 3 and le["+Inf"] == 4
    samples = _counts(metrics)
    assert samples["linkpulse_http_requests_total"] == {("/{code}", "GET", "302"): 4}
    assert samples["linkpulse_http_request_duration_seconds_sum"][("/{code}", "GET", "302")] == pytest.approx(
        BUCKETS[0] * 2.01 + 60.02
    )


async def test_a_status_is_taken_from_the_response_start_and_500_when_none_was_sent() -> None:
    metrics = RequestMetrics()

    async def crashes(scope: Any, receive: Any, send: Any) -> None:
        scope["path_template"] = "/boom"
        raise RuntimeError("before any response")

    async def answers(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    scope = {"type": "http", "method": "GET", "path": "/x"}
    with pytest.raises(RuntimeError):
        await RequestMetricsMiddleware(crashes, metrics)(dict(scope), receive, send)
    await RequestMetricsMiddleware(answers, metrics)(dict(scope), receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]  # passed on unchanged
    # A lifespan or websocket scope passes through uncounted.
    await RequestMetricsMiddleware(answers, metrics)({"type": "websocket"}, receive, send)

    assert _counts(metrics)["linkpulse_http_requests_total"] == {
        ("/boom", "GET", "500"): 1,
        ("unmatched", "GET", "204"): 1,
    }


TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def _openmetrics(collector: RequestMetrics) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return openmetrics.generate_latest(registry).decode()


def test_a_traced_request_is_its_buckets_exemplar_in_openmetrics_only() -> None:
    metrics = RequestMetrics()
    metrics.observe("/{code}", "GET", 302, 0.02, TRACE_ID)
    metrics.observe("/{code}", "GET", 302, 0.021)  # untraced: the bucket keeps the traced one
    metrics.observe("/{code}", "GET", 302, 0.00005)  # untraced: its bucket has none
    families = {f.name: f for f in openmetrics_parser.text_string_to_metric_families(_openmetrics(metrics))}
    samples = families["linkpulse_http_request_duration_seconds"].samples
    buckets = {s.labels["le"]: s for s in samples if s.name.endswith("_bucket")}
    exemplar = buckets["0.025"].exemplar
    assert exemplar is not None and exemplar.labels == {"trace_id": TRACE_ID} and exemplar.value == 0.02
    assert all(s.exemplar is None for le, s in buckets.items() if le != "0.025")
    assert buckets["0.025"].value == 3 and buckets["0.0001"].value == 1  # cumulative counts, as without exemplars
    # Prometheus's text format has no exemplars: the same collector exposes none there.
    registry = CollectorRegistry()
    registry.register(metrics)
    assert TRACE_ID not in generate_latest(registry).decode()


def test_metrics_endpoint_answers_openmetrics_to_a_scraper_that_asks_for_it() -> None:
    with TestClient(_app()) as c:
        c.get("/abc", follow_redirects=False)
        plain = c.get("/metrics")
        om = c.get("/metrics", headers={"accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"})
    assert plain.headers["content-type"].startswith("text/plain")
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    # The whole process registry is valid OpenMetrics (the parser is strict), ending in # EOF.
    families = {f.name for f in openmetrics_parser.text_string_to_metric_families(om.text)}
    assert {"linkpulse_http_requests", "linkpulse_http_request_duration_seconds"} <= families


_OPENMETRICS_CHECK = """
import importlib, sys
from prometheus_client import REGISTRY
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
importlib.import_module(sys.argv[1])
print(len(list(text_string_to_metric_families(generate_latest(REGISTRY).decode()))))
"""


@pytest.mark.parametrize("module", ["linkpulse.redirect.app", "linkpulse.admin.app", "linkpulse.ingest.__main__"])
def test_every_services_registry_is_valid_openmetrics(module: str) -> None:
    """Prometheus scrapes OpenMetrics when offered: a metric the strict parser refuses would fail the whole scrape."""
    out = subprocess.run([sys.executable, "-c", _OPENMETRICS_CHECK, module], capture_output=True, text=True, check=True)
    assert int(out.stdout) > 10
