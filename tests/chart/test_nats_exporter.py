"""The bundled NATS's Prometheus exporter: a sidecar per node, its PodMonitor, and the NetworkPolicy port."""

from __future__ import annotations

from typing import Any

from tests.chart.conftest import render, render_set

EXPORTER_PORT = 7777


def _exporter(out: Any) -> dict[str, Any] | None:
    containers = out.get("StatefulSet", "linkpulse-nats")["spec"]["template"]["spec"]["containers"]
    return next((c for c in containers if c["name"] == "exporter"), None)


def test_each_nats_node_runs_the_exporter_on_its_own_monitoring_port() -> None:
    out = render_set("defaults")
    exporter = _exporter(out)
    assert exporter is not None
    assert exporter["image"] == "natsio/prometheus-nats-exporter:0.20.1"
    # JetStream streams and consumers (-jsz=all), server and connections, read from this node only.
    assert exporter["args"] == [f"-port={EXPORTER_PORT}", "-varz", "-connz", "-jsz=all", "http://localhost:8222"]
    nats = next(c for c in out.get("StatefulSet", "linkpulse-nats")["spec"]["template"]["spec"]["containers"]
                if c["name"] == "nats")  # fmt: skip
    assert {"name": "monitor", "containerPort": 8222, "protocol": "TCP"} in nats["ports"]
    assert exporter["ports"] == [{"name": "metrics", "containerPort": EXPORTER_PORT, "protocol": "TCP"}]
    assert render({"nats": {"exporter": {"enabled": False}}}).find("PodMonitor", "linkpulse-nats") is None
    assert _exporter(render({"nats": {"exporter": {"enabled": False}}})) is None


def test_exporter_image_is_pinnable_like_the_other_bundled_images_and_its_resources_set() -> None:
    given = {"repository": "mirror.example/nats-exporter", "tag": "0.20.0", "pullPolicy": "Always"}
    resources = {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"cpu": "300m", "memory": "128Mi"}}
    exporter = _exporter(render({"nats": {"exporter": {"image": given, "resources": resources}}}))
    assert exporter is not None
    assert exporter["image"] == "mirror.example/nats-exporter:0.20.0" and exporter["imagePullPolicy"] == "Always"
    assert exporter["resources"] == resources


def test_pod_monitor_scrapes_every_nats_pod_on_the_exporter_port() -> None:
    assert render_set("defaults").of_kind("PodMonitor") == []
    out = render_set("everything")
    monitor = out.get("PodMonitor", "linkpulse-nats")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    pods = out.get("StatefulSet", "linkpulse-nats")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pods.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    exporter = _exporter(out)
    assert exporter is not None and endpoint["port"] in {p["name"] for p in exporter["ports"]}
    assert endpoint["path"] == "/metrics"
    # No bundled NATS: nothing to scrape here (an external NATS brings its own exporter).
    assert render_set("external").of_kind("PodMonitor") == []


def _exporter_rule(out: Any) -> list[dict[str, Any]]:
    ingress = out.get("NetworkPolicy", "linkpulse-nats")["spec"]["ingress"]
    return [r for r in ingress if r["ports"] == [{"port": EXPORTER_PORT, "protocol": "TCP"}]]


def test_network_policy_lets_the_scrapers_reach_the_exporter_port_only() -> None:
    (rule,) = _exporter_rule(render_set("everything"))
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    # No metricsFrom: any source may scrape it (it serves metrics only), while 8222 stays closed.
    (rule,) = _exporter_rule(render_set("defaults"))
    assert "from" not in rule
    assert _exporter_rule(render({"nats": {"exporter": {"enabled": False}}})) == []
