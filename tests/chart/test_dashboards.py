"""The Grafana dashboards the chart ships: valid dashboard JSON whose every query names a metric the services export.

What the services export is read from prometheus_client's registry in a fresh interpreter per service that
imports the service as its entry point does; nothing is grepped from the source.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from tests.chart.conftest import CHART, render_set

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
SERVICE_MODULES = {
    "redirect": "linkpulse.redirect.app",
    "admin": "linkpulse.admin.app",
    "ingest": "linkpulse.ingest.__main__",
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "heatmap", "text"}
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range", "__range_s"}

# The sample names a family can produce, including those of labelled metrics with no child yet
# (`_created` only where a sample shows it: a dashboard has no use for it).
_EXPORTED_NAMES = """
import importlib, json, sys
from prometheus_client import REGISTRY
suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"],
            "summary": ["", "_count", "_sum"], "info": ["_info"], "stateset": [""], "unknown": [""]}
importlib.import_module(sys.argv[1])
names = set()
for family in REGISTRY.collect():
    names.update(sample.name for sample in family.samples)
    names.update(family.name + suffix for suffix in suffixes[family.type])
print(json.dumps(sorted(names)))
"""

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$:.])[A-Za-z_:][\w:]*")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
             "atan2", "inf", "nan"}  # fmt: skip
_VARIABLE = re.compile(r"\$\{?(\w+)")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not functions, keywords or labels.

    Strings, label matchers, ranges and `by (...)`-style label lists are blanked first, so label names
    and values are never taken for metrics; an identifier followed by `(` is a function or aggregation.
    """
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("{}", text)
    text = _RANGES.sub("[]", text)
    text = _LABEL_LISTS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def _exported(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", _EXPORTED_NAMES, module], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample names each service's process exports on /metrics, by service."""
    return {service: _exported(module) for service, module in SERVICE_MODULES.items()}


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


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (status) (rate(a_total{route="/{code}", job=~"x|y"}[$__rate_interval]))', {"a_total"}),
        ("histogram_quantile(0.99, sum by (le, operation) (rate(b_bucket{outcome='ok'}[5m])))", {"b_bucket"}),
        ("sum by (tier) (rate(c_total[1m])) / ignoring (tier) group_left sum(rate(c_total[1m]))", {"c_total"}),
        ("sum(rate(d_sum[5m])) by (le) / sum(rate(e_count[5m])) without (pod)", {"d_sum", "e_count"}),
        ("max by (shard) (f_lag) > bool 10 and on (shard) g offset 1h", {"f_lag", "g"}),
        ('sum(h) * 1e3 + count(i{a="rate(j)"})', {"h", "i"}),
        ("k:recorded:rate5m", {"k:recorded:rate5m"}),
    ],
)
def test_metric_names_are_read_out_of_promql_not_functions_labels_or_numbers(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


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
    # Every query is balanced and uses only defined variables.
    for where, expr in _queries(dashboard):
        for left, right in ("()", "[]", "{}"):
            assert _STRINGS.sub('""', expr).count(left) == _STRINGS.sub('""', expr).count(right), where
        undefined = set(_VARIABLE.findall(expr)) - set(variables) - GRAFANA_VARIABLES
        assert not undefined, f"{where} uses undefined variables {undefined}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_dashboard_query_names_metrics_a_service_exports(path: Path, exported: dict[str, set[str]]) -> None:
    known = set().union(*exported.values())
    for where, expr in _queries(_load(path)):
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= known, f"{where}: {sorted(names - known)} exported by no service"


def test_dashboards_show_what_the_issue_asks_and_every_linkpulse_metric(exported: dict[str, set[str]]) -> None:
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
    # Every Linkpulse metric family is on some panel, so a new metric comes with its graph.
    families = {re.sub(r"_(total|created|bucket|count|sum)$", "", n) for n in set().union(*exported.values())}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used}
    missing = {f for f in families if f.startswith("linkpulse_")} - shown
    assert not missing, f"metrics on no dashboard: {sorted(missing)}"
