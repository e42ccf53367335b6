"""charts/linkpulse/values-production.yaml renders, lints and wires what its comments promise, and the
official NATS chart's values beside it ask for what Linkpulse needs (charts/linkpulse/tests/production_test.yaml)."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
import yaml
from tests.chart.conftest import CHART, KUBE_VERSION, Rendered, render
from tests.chart.test_conventions import assert_valid

PRODUCTION = yaml.safe_load((CHART / "values-production.yaml").read_text())
NATS_VALUES = yaml.safe_load((CHART / "examples" / "nats-values.yaml").read_text())
DATABASE_HOST = "postgres.example.com:5432"


@pytest.fixture(scope="module", params=[True, False], ids=["install", "upgrade"])
def production(request: pytest.FixtureRequest) -> Rendered:
    return render(PRODUCTION, install=request.param)


def test_production_values_render_valid_objects_and_lint_clean(production: Rendered) -> None:
    assert_valid(production)
    report = helm_python.lint(CHART, PRODUCTION, strict=True, namespace="links", kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_production_runs_no_bundled_nats_or_database_and_redis_from_its_secret(production: Rendered) -> None:
    components = {w["metadata"]["labels"]["app.kubernetes.io/component"] for w in production.workloads()}
    assert "nats" not in components and "timescaledb" not in components and "redis" in components
    assert production.find("Secret", "linkpulse-redis") is None  # redis.auth.existingSecret
    assert production.find("Secret", "linkpulse-nats") is None
    for _, container in production.linkpulse_containers():
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "valueFrom" in e}
        if "LINKPULSE_NATS_URL" in refs:
            assert refs["LINKPULSE_NATS_URL"] == {"name": "linkpulse-nats", "key": "nats-url"}, container["name"]


def _database_url(out: Rendered, container: dict[str, Any]) -> str:
    (ref,) = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if e["name"] == "LINKPULSE_DATABASE_URL"]
    return out.secret_value(ref["name"], ref["key"])


def test_the_setup_step_migrates_as_the_owner_with_pgpassword_and_services_use_their_roles() -> None:
    out = render(PRODUCTION, install=False)  # an upgrade: the hook Jobs run migrate and streams
    migrate = out.get("Job", "linkpulse-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert migrate["envFrom"] == [{"secretRef": {"name": "linkpulse-db-owner"}}]
    owner = _database_url(out, migrate)
    assert owner == f"postgresql://linkpulse@{DATABASE_HOST}/linkpulse?sslmode=verify-full"  # no password in it
    for _, container in out.linkpulse_containers():
        if container["name"] in {"redirect", "ingest", "admin"}:
            dsn = _database_url(out, container)
            role = f"linkpulse_{container['name']}_login"
            assert dsn.startswith(f"postgresql://{role}:") and dsn.endswith(
                f"@{DATABASE_HOST}/linkpulse?sslmode=verify-full"
            )
            assert "envFrom" not in container or all("secretRef" not in s for s in container["envFrom"])


def test_production_is_reached_through_the_gateway_only(production: Rendered) -> None:
    routes = {r["metadata"]["name"]: r["spec"] for r in production.of_kind("HTTPRoute")}
    assert routes["linkpulse-redirect"]["hostnames"] == ["sho.rt"]
    assert routes["linkpulse-admin"]["parentRefs"][0]["sectionName"] == "https-admin"
    assert production.of_kind("Ingress") == []
    policies = {p["metadata"]["name"]: p["spec"] for p in production.of_kind("NetworkPolicy")}
    gateway = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}}
    assert gateway in policies["linkpulse-redirect"]["ingress"][0]["from"]
    egress = {p["port"] for rule in policies["linkpulse-egress"]["egress"] for p in rule.get("ports", [])}
    assert {4222, 5432} <= egress


def test_the_official_nats_chart_values_give_a_clustered_jetstream_that_fsyncs_every_write() -> None:
    config = NATS_VALUES["config"]
    assert config["cluster"] == {"enabled": True, "replicas": 3}
    assert PRODUCTION["config"]["clicks"]["replicas"] == 3  # the streams' replicas fit the cluster
    assert config["jetstream"]["enabled"] is True
    # The chart merges config.jetstream.merge into the server's jetstream { } block.
    assert config["jetstream"]["merge"] == {"sync_interval": "always"}
    (user,) = config["merge"]["authorization"]["users"]
    assert user == {"user": "linkpulse", "password": "<< $LINKPULSE_PASSWORD >>"}
    assert (
        NATS_VALUES["container"]["env"]["LINKPULSE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "nats-linkpulse"
    )
    # The file store limit stays below the PVC and above the CLICKS byte cap.
    store = config["jetstream"]["fileStore"]
    assert int(store["maxSize"].removesuffix("Gi")) < int(store["pvc"]["size"].removesuffix("Gi"))
    assert int(store["maxSize"].removesuffix("Gi")) * 2**30 > 8 * 2**30
