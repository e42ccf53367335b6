"""Gateway API HTTPRoutes beside the Ingress (charts/linkpulse/tests/httproute_test.yaml).

HTTPRoute is a custom resource kubernetes-validate has no schema for (CRD_KINDS): its shape is checked
here against the Gateway API v1 fields the chart writes.
"""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
from tests.chart.conftest import CHART, render
from tests.chart.test_conventions import assert_valid

GATEWAY = {"name": "public", "namespace": "gateway-system"}
ROUTES = {
    "httpRoute": {
        "enabled": True,
        "parentRefs": [GATEWAY],
        "annotations": {"example.com/route": "public"},
        "redirect": {"hostnames": ["sho.rt"]},
        "admin": {"hostnames": ["admin.sho.rt"], "parentRefs": [GATEWAY | {"sectionName": "https"}]},
    }
}


def _routes(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = render(values)
    assert_valid(out)  # everything but the routes themselves
    return {r["metadata"]["name"]: r for r in out.of_kind("HTTPRoute")}


def test_routes_send_each_hostname_to_its_service_port() -> None:
    out = render(ROUTES)
    routes = {r["metadata"]["name"]: r for r in out.of_kind("HTTPRoute")}
    assert set(routes) == {"linkpulse-redirect", "linkpulse-admin"}
    for name, route in routes.items():
        assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
        assert route["metadata"]["annotations"] == {"example.com/route": "public"}
        assert set(route["spec"]) == {"parentRefs", "hostnames", "rules"}
        (rule,) = route["spec"]["rules"]
        assert set(rule) == {"matches", "backendRefs"}
        (backend,) = rule["backendRefs"]
        service = out.get("Service", backend["name"])  # the route's Service exists, on that port
        assert backend["name"] == name and backend["port"] in {p["port"] for p in service["spec"]["ports"]}
        assert all(set(m) == {"path"} and m["path"]["type"] == "PathPrefix" for m in rule["matches"])
    redirect, admin = routes["linkpulse-redirect"]["spec"], routes["linkpulse-admin"]["spec"]
    assert redirect["parentRefs"] == [GATEWAY] and redirect["hostnames"] == ["sho.rt"]
    assert [m["path"]["value"] for m in redirect["rules"][0]["matches"]] == ["/"]
    # Admin: its own parent (the HTTPS listener) and only /api and /schema, as its Ingress.
    assert admin["parentRefs"] == [GATEWAY | {"sectionName": "https"}] and admin["hostnames"] == ["admin.sho.rt"]
    assert [m["path"]["value"] for m in admin["rules"][0]["matches"]] == ["/api", "/schema"]
    assert render({}).of_kind("HTTPRoute") == []


def test_notes_name_the_route_hostnames() -> None:
    notes = render(ROUTES).notes
    assert "redirect  sho.rt" in notes and "admin     admin.sho.rt   (/api, /schema only)" in notes
    assert "port-forward svc/" not in notes


def test_route_hostnames_are_admins_own_hosts() -> None:
    values = ROUTES | {"admin": {"ownHosts": ["l.example.net"]}}
    values["httpRoute"] = values["httpRoute"] | {"redirect": {"hostnames": ["sho.rt", "*.sho.rt"]}}
    out = render(values)
    admin = next(c for _, c in out.linkpulse_containers() if c["name"] == "admin")
    assert out.environment(admin)["LINKPULSE_ADMIN_OWN_HOSTS"] == "sho.rt,admin.sho.rt,l.example.net"


def test_routes_can_be_switched_one_by_one() -> None:
    values = {"httpRoute": ROUTES["httpRoute"] | {"admin": {"enabled": False}}}
    assert set(_routes(values)) == {"linkpulse-redirect"}


def test_a_route_without_a_gateway_fails_clearly() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"httpRoute\.parentRefs"):
        render({"httpRoute": {"enabled": True}})


@pytest.mark.parametrize("path", ["/", "/metrics", "/healthz", "/apix"])
def test_the_admin_route_exposes_only_the_api_and_its_schema(path: str) -> None:
    values = {"httpRoute": {"enabled": True, "parentRefs": [GATEWAY], "admin": {"paths": ["/api", path]}}}
    with pytest.raises((helm_python.HelmRenderError, helm_python.HelmValuesError), match="paths"):
        render(values)


def test_helm_lint_accepts_the_routes() -> None:
    report = helm_python.lint(CHART, ROUTES, strict=True, namespace="links")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []
