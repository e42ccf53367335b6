"""The Grafana dashboards the chart ships: valid dashboard JSON whose every query parses and names a metric the
services or the bundled NATS's exporter export (tests/chart/exported_metrics.py says how those are known).
"""

from __future__ import annotations

import json
import re
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from tests.chart.conftest import CHART, render_set
from tests.chart.exported_metrics import NATS_EXPORTER_METRICS, exported_by_services
from tests.chart.promql import check, metric_names

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "heatmap", "text"}
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range", "__range_s"}
_VARIABLE = re.compile(r"\$\{?(\w+)")


@pytest.fixture(scope="module")
def exported() -> dict[str, frozenset[str]]:
    """Sample names each service's process exports on /metrics, by service."""
    return exported_by_services()


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    queries = [
        (f"panel {p['id']} {p.get('title', '')!r} {t['refId']}", t["expr"])
        for p in _panels(dashboard)
        for t in p.get("targets", [])
    ]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            # label_values(metric, label) is Grafana's, not PromQL: its first argument is the selector.
            selector = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
            queries.append((f"variable {var['name']}", selector.group(1) if selector else query))
    return queries


def test_dashboards_config_map_ships_every_dashboard_with_the_sidecar_label() -> None:
    config_map = render_set("everything").get("ConfigMap", "linkpulse-dashboards")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert DASHBOARDS and sorted(config_map["data"]) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert json.loads(config_map["data"][path.name]) == _load(path)  # shipped unchanged
    assert render_set("defaults").find("ConfigMap", "linkpulse-dashboards") is None


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_grafana_json(path: Path) -> None:
    dashboard = _load(path)
    assert isinstance(dashboard["uid"], str) and re.fullmatch(r"[\w-]{1,40}", dashboard["uid"])
    assert dashboard["title"] and isinstance(dashboard["tags"], list)
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["time"]["from"] and dashboard["time"]["to"]
    assert "id" not in dashboard or dashboard["id"] is None  # an id would clash across Grafana instances

    # A `datasource` variable of type prometheus, which every panel and target uses.
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, var["name"]

    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), f"panel ids not unique: {ids}"
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("x", "y", "w", "h")), panel["id"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["id"]
        if panel["type"] == "row":
            assert grid["w"] == 24 and grid["h"] == 1 and "targets" not in panel
            continue
        assert panel["type"] in PANEL_TYPES, panel["type"]
        assert panel["title"] and panel["datasource"] == DATASOURCE, panel["id"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), f"panel {panel['id']}: refIds {refs}"
        for target in panel["targets"]:
            assert isinstance(target["expr"], str) and target["expr"].strip(), (panel["id"], target["refId"])
            assert target.get("datasource", DATASOURCE) == DATASOURCE, (panel["id"], target["refId"])
    # No two panels cover the same cells.
    boxes = [(p["id"], p["gridPos"]) for p in panels]
    for (a, ga), (b, gb) in combinations(boxes, 2):
        apart = (
            ga["x"] + ga["w"] <= gb["x"]
            or gb["x"] + gb["w"] <= ga["x"]
            or ga["y"] + ga["h"] <= gb["y"]
            or gb["y"] + gb["h"] <= ga["y"]
        )
        assert apart, f"panels {a} and {b} overlap"
    # Every query parses and uses only defined variables.
    for where, expr in _queries(dashboard):
        check(expr)
        undefined = set(_VARIABLE.findall(expr)) - set(variables) - GRAFANA_VARIABLES
        assert not undefined, f"{where} uses undefined variables {undefined}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_dashboard_query_names_metrics_a_service_or_the_nats_exporter_exports(
    path: Path, exported: dict[str, frozenset[str]]
) -> None:
    known = set().union(*exported.values()) | NATS_EXPORTER_METRICS
    for where, expr in _queries(_load(path)):
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= known, f"{where}: {sorted(names - known)} exported by no service nor the NATS exporter"


def test_dashboards_show_what_the_issue_asks_and_every_linkpulse_metric(exported: dict[str, frozenset[str]]) -> None:
    exprs = [expr for path in DASHBOARDS for _, expr in _queries(_load(path))]
    used = set().union(*(metric_names(e) for e in exprs))
    # Redirects/s, latency quantiles, error rate, cache tiers, lag, events/s, DB latency, publisher, dead letters.
    assert {
        "linkpulse_http_requests_total",
        "linkpulse_http_request_duration_seconds_bucket",
        "linkpulse_redirect_lookups_total",
        "linkpulse_ingest_lag_messages",
        "linkpulse_ingest_events_total",
        "linkpulse_db_operation_duration_seconds_bucket",
        "linkpulse_publisher_queue_depth",
        "linkpulse_publisher_spill_bytes",
        "linkpulse_ingest_dead_letters_total",
    } <= used
    assert any("histogram_quantile(0.99" in e and "linkpulse_http_request_duration_seconds_bucket" in e for e in exprs)
    assert any("histogram_quantile(0.5" in e and "linkpulse_http_request_duration_seconds_bucket" in e for e in exprs)
    assert any('status=~"5.."' in e for e in exprs) and any('status=~"4.."' in e for e in exprs)
    # JetStream from the NATS exporter: stream bytes and messages against their limits, consumer pending,
    # ack pending and redeliveries per ingest consumer; every exporter metric the chart names is shown.
    assert used >= NATS_EXPORTER_METRICS
    # Slow requests link to their traces: exemplars on the latency histogram, a tracing data source variable.
    dashboards = [_load(path) for path in DASHBOARDS]
    exemplars = [
        (panel, target)
        for dashboard in dashboards
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("exemplar") is True
    ]
    assert any("linkpulse_http_request_duration_seconds_bucket" in target["expr"] for _, target in exemplars)
    assert any(
        v["type"] == "datasource" and v["query"] == "tempo" and v["name"] == "tracing"
        for dashboard in dashboards
        for v in dashboard["templating"]["list"]
    )
    assert all(any("${tracing}" in link["url"] for link in panel.get("links", [])) for panel, _ in exemplars)
    # Every Linkpulse metric family is on some panel, so a new metric comes with its graph.
    families = {re.sub(r"_(total|created|bucket|count|sum)$", "", n) for n in set().union(*exported.values())}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used}
    missing = {f for f in families if f.startswith("linkpulse_")} - shown
    assert not missing, f"metrics on no dashboard: {sorted(missing)}"
