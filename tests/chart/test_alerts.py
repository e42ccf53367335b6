"""The PrometheusRule: every alert parses, names only exported metrics, has its runbook, and follows its values."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from helm_python.errors import HelmValuesError
from tests.chart.conftest import CHART, NAMESPACE, render, render_set
from tests.chart.exported_metrics import NATS_EXPORTER_METRICS, exported_by_services
from tests.chart.promql import check, metric_names

ALERTS_DOC = CHART.parents[1] / "docs" / "alerts.md"
METRICS_DOC = CHART.parents[1] / "docs" / "metrics.md"
# values key -> alert name: what the issue asks for, each switchable on its own.
ALERTS = {
    "ingestLag": "LinkpulseIngestLagHigh",
    "spillNotEmpty": "LinkpulseSpillFileNotEmpty",
    "publisherDisconnected": "LinkpulsePublisherDisconnected",
    "redirect5xxRatio": "LinkpulseRedirect5xxRatioHigh",
    "deadLetters": "LinkpulseDeadLettersGrowing",
    "clicksStreamFull": "LinkpulseClicksStreamNearLimit",
    "cacheHitRatio": "LinkpulseCacheHitRatioLow",
}
_DURATION = re.compile(r"[0-9]+(ms|s|m|h|d|w|y)")
_TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)")


def _rules(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = render({"metrics": {"prometheusRule": {"enabled": True, **(values or {})}}})
    rule = out.get("PrometheusRule", "linkpulse-alerts")
    (group,) = rule["spec"]["groups"]
    return list(group["rules"] or [])


def _by_name(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in rules}


def _default_runbook() -> str:
    """docs/alerts.md on the chart's home (a GitHub repository) when Chart.yaml names one, else its repository path."""
    home = yaml.safe_load((CHART / "Chart.yaml").read_text()).get("home")
    return f"{home.rstrip('/')}/blob/main/docs/alerts.md" if home else "docs/alerts.md"


def _doc_anchors() -> set[str]:
    """GitHub's anchors of docs/alerts.md's second-level headings."""
    headings = re.findall(r"^## (.+)$", ALERTS_DOC.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_no_rule_unless_asked_and_a_well_formed_one_when_asked() -> None:
    assert render_set("defaults").of_kind("PrometheusRule") == []
    rule = render_set("everything").get("PrometheusRule", "linkpulse-alerts")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prometheus"  # additionalLabels
    assert rule["metadata"]["labels"]["app.kubernetes.io/component"] == "alerts"
    (group,) = rule["spec"]["groups"]
    assert group["name"] == "linkpulse"
    assert [r["alert"] for r in group["rules"]] == list(ALERTS.values())
    for rule in group["rules"]:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert _DURATION.fullmatch(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert all(isinstance(v, str) and v for v in [*rule["labels"].values(), *rule["annotations"].values()])


def test_every_expression_parses_and_names_only_exported_metrics() -> None:
    exported = set().union(*exported_by_services().values())
    for rule in _rules():
        check(rule["expr"])
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        unknown = names - exported - NATS_EXPORTER_METRICS
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} exported by no service nor the NATS exporter"
        # The release's own series only; the JetStream ones carry the exporter's namespace.
        if any(n.startswith("linkpulse_") for n in names):
            selectors = re.findall(r"linkpulse_\w+\{([^}]*)\}", rule["expr"])
            assert selectors and all(f'namespace="{NAMESPACE}"' in s for s in selectors), rule["alert"]


def test_every_documented_exporter_metric_is_in_docs_metrics() -> None:
    doc = METRICS_DOC.read_text()
    assert all(f"`{name}`" in doc for name in NATS_EXPORTER_METRICS)


def test_every_alert_has_a_summary_a_description_and_its_runbook_section() -> None:
    anchors = _doc_anchors()
    assert anchors == {name.lower() for name in ALERTS.values()}  # one section per alert, no stale one
    for rule in _rules():
        notes = rule["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url"}
        assert notes["runbook_url"] == f"{_default_runbook()}#{rule['alert'].lower()}"
        # A label a description shows must survive the expression's aggregation.
        for label in _TEMPLATE_LABEL.findall(notes["description"]):
            assert re.search(rf"\bby \([^)]*\b{label}\b", rule["expr"]), (rule["alert"], label)
    for name in ALERTS.values():
        section = ALERTS_DOC.read_text().split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert all(part in section for part in ("**What it means.**", "**What to check.**", "**What to do.**"))


def test_runbook_base_url_can_be_set() -> None:
    rules = _rules({"runbookBaseUrl": "https://wiki.example/linkpulse/alerts"})
    assert {r["runbook_url"] for r in (r["annotations"] for r in rules)} == {
        f"https://wiki.example/linkpulse/alerts#{name.lower()}" for name in ALERTS.values()
    }


@pytest.mark.parametrize("key", sorted(ALERTS))
def test_each_alert_can_be_switched_off_alone(key: str) -> None:
    names = set(_by_name(_rules({"alerts": {key: {"enabled": False}}})))
    assert names == set(ALERTS.values()) - {ALERTS[key]}


def test_with_every_alert_off_the_group_is_empty() -> None:
    assert _rules({"alerts": {key: {"enabled": False} for key in ALERTS}}) == []


def test_thresholds_durations_and_severities_come_from_the_values() -> None:
    given = {
        "ingestLag": {"threshold": 2500, "for": "3m", "severity": "critical"},
        "spillNotEmpty": {"for": "1m", "severity": "critical"},
        "publisherDisconnected": {"for": "30s", "severity": "warning"},
        "redirect5xxRatio": {"threshold": 0.05, "for": "2m", "severity": "warning"},
        "deadLetters": {"threshold": 10, "for": "1h", "severity": "info"},
        "clicksStreamFull": {"threshold": 0.9, "for": "20m", "severity": "critical"},
        "cacheHitRatio": {"threshold": 0.7, "minLookupsPerSecond": 5, "for": "30m", "severity": "info"},
    }
    rules = _by_name(_rules({"alerts": given}))
    for key, cfg in given.items():
        rule = rules[ALERTS[key]]
        assert rule["for"] == cfg["for"] and rule["labels"]["severity"] == cfg["severity"], key
    expr = {key: rules[name]["expr"] for key, name in ALERTS.items()}
    assert expr["ingestLag"].endswith("> 2500")
    assert expr["redirect5xxRatio"].endswith("> 0.05")
    assert expr["deadLetters"].endswith("> 10")
    assert expr["clicksStreamFull"].endswith("> 0.9")
    assert "< 0.7)" in expr["cacheHitRatio"] and expr["cacheHitRatio"].endswith("> 5")
    assert "2500" in rules["LinkpulseIngestLagHigh"]["annotations"]["description"]


def test_schema_refuses_bad_alert_values() -> None:
    for bad in (
        {"alerts": {"redirect5xxRatio": {"threshold": 5}}},
        {"alerts": {"ingestLag": {"for": "ten minutes"}}},
        {"alerts": {"unknown": {"enabled": True}}},
        {"runbookBaseUrl": "javascript:alert(1)"},
    ):
        with pytest.raises(HelmValuesError):
            render({"metrics": {"prometheusRule": {"enabled": True, **bad}}})
