"""Every rendered object is valid Kubernetes, the chart lints clean, and the names others rely on hold."""

from __future__ import annotations

import collections
from typing import Any

import helm_python
import kubernetes_validate
import pytest
from tests.chart.conftest import CHART, CRD_KINDS, KUBE_VERSION, VALUE_SETS, Rendered, render, render_set


def test_every_object_passes_strict_kubernetes_validation(rendered: Rendered) -> None:
    assert rendered.objects
    for obj in rendered.objects:
        if obj["kind"] in CRD_KINDS:
            continue  # no schema in kubernetes-validate: checked structurally below
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {where}")


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_strict_is_clean(value_set: str) -> None:
    report = helm_python.lint(
        CHART, VALUE_SETS[value_set], strict=True, namespace="links", kube_version=f"v{KUBE_VERSION}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == []


def test_object_names_are_unique_and_namespaced(rendered: Rendered) -> None:
    names = collections.Counter((o["kind"], o["metadata"]["name"]) for o in rendered.objects)
    assert [k for k, n in names.items() if n > 1] == []
    dashboards = rendered.values["metrics"]["dashboards"]["namespace"]
    for obj in rendered.objects:
        assert obj["metadata"]["namespace"] in {"links", dashboards}, obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "linkpulse"


def test_services_and_images_keep_the_names_skaffold_uses() -> None:
    # Release "linkpulse" → Services linkpulse-redirect / linkpulse-admin, images linkpulse-<service>.
    out = render_set("defaults")
    for service, port in (("redirect", 8000), ("admin", 8001)):
        svc = out.get("Service", f"linkpulse-{service}")
        assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
        deployment = out.get("Deployment", f"linkpulse-{service}")
        assert svc["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"linkpulse-{service}:0.1.0"
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    (ingest,) = out.get("Deployment", "linkpulse-ingest")["spec"]["template"]["spec"]["containers"]
    assert ingest["image"] == "linkpulse-ingest:0.1.0"
    assert ingest["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert "command" not in ingest and "args" not in ingest  # the images run their service by default


def test_registry_tag_and_digest_make_the_image_reference() -> None:
    out = render(
        {
            "image": {"registry": "ghcr.io/acme/", "tag": "2.0.0"},
            "ingest": {"image": {"tag": "2.0.1"}},
            "admin": {"image": {"digest": "sha256:" + "a" * 64}},
        }
    )
    images = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in out.of_kind("Deployment")
    }
    assert images == {
        "linkpulse-redirect": "ghcr.io/acme/linkpulse-redirect:2.0.0",
        "linkpulse-ingest": "ghcr.io/acme/linkpulse-ingest:2.0.1",
        "linkpulse-admin": "ghcr.io/acme/linkpulse-admin@sha256:" + "a" * 64,
    }
    for job in out.of_kind("Job"):  # the setup runs the admin image, whatever it is
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == images["linkpulse-admin"]


def test_another_release_name_gets_its_own_prefix() -> None:
    out = render({}, name="shortener")
    assert {d["metadata"]["name"] for d in out.of_kind("Deployment")} == {
        "shortener-linkpulse-redirect",
        "shortener-linkpulse-ingest",
        "shortener-linkpulse-admin",
    }


def _selects(selector: dict[str, str], obj: dict[str, Any]) -> bool:
    return selector.items() <= obj["metadata"]["labels"].items()


def test_service_monitors_select_a_service_with_their_port() -> None:
    out = render_set("everything")
    monitors = out.of_kind("ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"linkpulse-redirect", "linkpulse-admin", "linkpulse-ingest"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in out.of_kind("Service") if _selects(selector, s)]
        assert len(services) == 1, monitor["metadata"]["name"]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        port = next(p for p in services[0]["spec"]["ports"] if p["name"] == endpoint["port"])
        # ...and that port reaches a container port serving /metrics.
        pods = [
            d for d in out.of_kind("Deployment") if _selects(services[0]["spec"]["selector"], d["spec"]["template"])
        ]
        assert len(pods) == 1
        container_ports = {p["name"] for p in pods[0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert port["targetPort"] in container_ports


def test_no_service_monitor_or_metrics_service_unless_asked() -> None:
    out = render_set("defaults")
    assert out.of_kind("ServiceMonitor") == []
    assert out.find("Service", "linkpulse-ingest-metrics") is None


def test_keda_scaled_object_scales_ingest_on_every_shard_consumer() -> None:
    for set_name, endpoint in (
        ("everything", "linkpulse-nats-headless.links.svc:8222"),
        ("external", "nats-monitor.nats.svc:8222"),
    ):
        out = render_set(set_name)
        (scaled,) = out.of_kind("ScaledObject")
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        spec = scaled["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "linkpulse-ingest"}
        assert out.get("Deployment", "linkpulse-ingest")
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
        shards = out.values["config"]["clicks"]["shards"]
        consumers = []
        for trigger in spec["triggers"]:
            assert trigger["type"] == "nats-jetstream"
            meta = trigger["metadata"]
            assert all(isinstance(v, str) for v in meta.values())  # KEDA metadata is a string map
            assert meta["stream"] == "CLICKS" and meta["natsServerMonitoringEndpoint"] == endpoint
            assert int(meta["lagThreshold"]) > 0
            consumers.append(meta["consumer"])
        assert consumers == [f"ingest-{shard}" for shard in range(shards)]


def test_keda_with_external_nats_needs_the_monitoring_endpoint() -> None:
    values = VALUE_SETS["external-plain"] | {"keda": {"enabled": True}}
    with pytest.raises(helm_python.HelmRenderError, match=r"keda\.natsServerMonitoringEndpoint"):
        render(values)


def test_ingress_routes_hosts_to_the_services_with_tls() -> None:
    out = render_set("ingress")
    redirect, admin = out.get("Ingress", "linkpulse-redirect"), out.get("Ingress", "linkpulse-admin")
    for ingress, host, service, secret in (
        (redirect, "sho.rt", "linkpulse-redirect", "linkpulse-redirect-tls"),
        (admin, "admin.sho.rt", "linkpulse-admin", "admin-cert"),
    ):
        assert ingress["spec"]["ingressClassName"] == "nginx"
        (rule,) = ingress["spec"]["rules"]
        assert rule["host"] == host
        backends = [p["backend"]["service"] for p in rule["http"]["paths"]]
        assert backends == [{"name": service, "port": {"name": "http"}}] * (2 if service.endswith("admin") else 1)
        assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": secret}]
    # Shared annotations on both, the admin allow-list only on admin.
    assert redirect["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-body-size": "2m"}
    assert admin["metadata"]["annotations"]["nginx.ingress.kubernetes.io/whitelist-source-range"] == "10.0.0.0/8"
    assert render_set("defaults").of_kind("Ingress") == []


def test_one_host_with_admin_on_its_own_paths() -> None:
    out = render(
        {
            "ingress": {
                "enabled": True,
                "redirect": {"host": "sho.rt"},
                "admin": {"host": "sho.rt", "allowInsecure": True},
            }
        }
    )
    paths = {
        p["path"]: p["backend"]["service"]["name"]
        for i in out.of_kind("Ingress")
        for p in i["spec"]["rules"][0]["http"]["paths"]
    }
    assert paths == {"/": "linkpulse-redirect", "/api": "linkpulse-admin", "/schema": "linkpulse-admin"}


def test_network_policies_allow_what_linkpulse_needs() -> None:
    out = render_set("everything")
    policies = {p["metadata"]["name"]: p["spec"] for p in out.of_kind("NetworkPolicy")}
    assert set(policies) == {
        "linkpulse-redirect",
        "linkpulse-admin",
        "linkpulse-ingest",
        "linkpulse-egress",
        "linkpulse-nats",
        "linkpulse-redis",
        "linkpulse-timescaledb",
        "linkpulse-test",
    }
    (http_rule,) = policies["linkpulse-redirect"]["ingress"]
    assert http_rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}} in http_rule["from"]
    egress = policies["linkpulse-egress"]
    ports = {(p["port"], p["protocol"]) for rule in egress["egress"] for p in rule.get("ports", [])}
    assert {(53, "UDP"), (53, "TCP"), (4222, "TCP"), (6379, "TCP"), (5432, "TCP"), (4317, "TCP")} <= ports
    # The egress policy covers every Linkpulse pod, setup Jobs included.
    (expr,) = egress["podSelector"]["matchExpressions"]
    components = {c["metadata"]["labels"]["app.kubernetes.io/component"] for c in out.workloads()}
    assert components - {"nats", "redis", "timescaledb"} <= set(expr["values"])


def test_network_policy_egress_uses_the_ports_of_external_urls() -> None:
    out = render_set("external")
    egress = out.get("NetworkPolicy", "linkpulse-egress")["spec"]["egress"]
    ports = {p["port"] for rule in egress for p in rule["ports"]}
    assert ports == {53, 4222, 4223, 6380, 5432}
    assert {p["metadata"]["name"] for p in out.of_kind("NetworkPolicy")} == {
        "linkpulse-redirect",
        "linkpulse-admin",
        "linkpulse-ingest",
        "linkpulse-egress",
        "linkpulse-test",
    }


def test_notes_explain_how_to_reach_the_services_and_read_the_key() -> None:
    notes = render_set("defaults").notes
    assert "port-forward svc/linkpulse-redirect 8000:80" in notes
    assert "port-forward svc/linkpulse-admin 8001:80" in notes
    assert "get secret linkpulse -o jsonpath='{.data.admin-key}' | base64 -d" in notes
    notes = render_set("ingress").notes
    assert "https://sho.rt/" in notes and "https://admin.sho.rt/" in notes
    assert "get secret lp-admin -o jsonpath='{.data.key}'" in render_set("external").notes
