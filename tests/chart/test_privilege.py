"""Least privilege in the chart: per-service users in NATS and Redis, a TLS-only admin ingress, policies on."""

from __future__ import annotations

import re

import pytest
from helm_python.errors import HelmRenderError, HelmValuesError
from tests.chart.conftest import VALUE_SETS, render, render_set

from linkpulse.localstack.access import REDIS_USERS
from linkpulse.messaging.permissions import SERVICE_USERS, permissions

_NATS_USER = re.compile(
    r'\{user: "(?P<user>[^"]+)", password: "[^"]+"'
    r"(?:, permissions: \{publish: \{allow: \[(?P<pub>[^\]]*)\]\}, subscribe: \{allow: \[(?P<sub>[^\]]*)\]\}\})?\}"
)


def _subjects(listed: str) -> tuple[str, ...]:
    return tuple(s.strip().strip('"') for s in listed.split(","))


def test_nats_users_have_exactly_the_permissions_the_services_are_written_for() -> None:
    out = render_set("defaults")
    auth = out.secret_value("linkpulse-nats", "auth.conf")
    users = {m["user"]: m for m in _NATS_USER.finditer(auth)}
    assert set(users) == {"setup", *SERVICE_USERS}
    assert users["setup"]["pub"] is None, "only setup manages streams: it alone is unrestricted"
    for user in SERVICE_USERS:
        assert _subjects(users[user]["pub"]) == permissions(user).publish, user
        assert _subjects(users[user]["sub"]) == permissions(user).subscribe, user
    # The passwords in auth.conf are the ones in each service's URL.
    for user in ("setup", *SERVICE_USERS):
        assert f'{{user: "{user}", password: "{out.secret_value("linkpulse-nats", user)}"' in auth


def test_redis_users_have_the_rules_of_the_local_stack_and_protected_mode_stays_on() -> None:
    for name in VALUE_SETS:
        out = render_set(name)
        for workload in out.workloads():
            for container in out.containers(workload):
                assert "--protected-mode" not in container.get("args", []), (name, workload["metadata"]["name"])
    # The container writes its ACL file at start, a user per line, the password from its environment.
    redis = render_set("known-secrets").get("StatefulSet", "linkpulse-redis")["spec"]["template"]["spec"]
    (script,) = redis["containers"][0]["args"]
    users = re.findall(r"printf 'user (\S+) on >%s (.*)\\n' \"\$(\w+)\"", script)
    assert users[0] == ("default", "~* &* +@all", "REDISCLI_AUTH")
    assert {user: rules for user, rules, _ in users[1:]} == REDIS_USERS
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in redis["containers"][0]["env"]}
    assert {variable: secrets[variable] for _, _, variable in users} == {
        "REDISCLI_AUTH": {"name": "linkpulse-redis", "key": "password"},
        "REDIS_REDIRECT_PASSWORD": {"name": "linkpulse-redis", "key": "redirect-password"},
        "REDIS_ADMIN_PASSWORD": {"name": "linkpulse-redis", "key": "admin-password"},
    }
    with pytest.raises(HelmRenderError, match="protected-mode"):
        render({"redis": {"auth": {"enabled": False}}})


def test_admin_ingress_needs_tls_or_an_explicit_allow_insecure() -> None:
    with pytest.raises(HelmRenderError, match=r"ingress\.admin\.allowInsecure"):
        render({"ingress": {"enabled": True}})
    insecure = render({"ingress": {"enabled": True, "admin": {"allowInsecure": True}}})
    assert "tls" not in insecure.get("Ingress", "linkpulse-admin")["spec"]
    tls = render({"ingress": {"enabled": True, "admin": {"tls": {"enabled": True}}}})
    assert tls.get("Ingress", "linkpulse-admin")["spec"]["tls"][0]["hosts"] == ["admin.links.example.com"]
    # Without the admin Ingress, nothing to refuse.
    assert (
        render({"ingress": {"enabled": True, "admin": {"enabled": False}}}).find("Ingress", "linkpulse-admin") is None
    )


def test_admin_ingress_exposes_only_the_api_and_its_schema() -> None:
    out = render({"ingress": {"enabled": True, "admin": {"tls": {"enabled": True}}}})
    paths = [p["path"] for p in out.get("Ingress", "linkpulse-admin")["spec"]["rules"][0]["http"]["paths"]]
    assert paths == ["/api", "/schema"]
    for path in ("/", "/metrics", "/healthz", "/apix"):
        with pytest.raises((HelmRenderError, HelmValuesError), match="paths"):
            render({"ingress": {"enabled": True, "admin": {"tls": {"enabled": True}, "paths": ["/api", path]}}})
    assert render({"ingress": {"enabled": True, "admin": {"tls": {"enabled": True}, "paths": ["/api/v1"]}}})


def test_network_policies_are_on_by_default_and_close_the_nats_monitor_port_to_all_but_scrapers() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in render_set("defaults").of_kind("NetworkPolicy")}
    assert {"linkpulse-redirect", "linkpulse-admin", "linkpulse-ingest", "linkpulse-egress", "linkpulse-nats",
            "linkpulse-redis", "linkpulse-timescaledb", "linkpulse-test"} == set(policies)  # fmt: skip
    nats = policies["linkpulse-nats"]
    assert all(p["port"] != 8222 for rule in nats["ingress"] for p in rule["ports"])
    # Every bundled dependency reaches out to DNS only (NATS also to its peers' routes).
    for name in ("linkpulse-redis", "linkpulse-timescaledb"):
        assert policies[name]["egress"] == [
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
        ]
    keda = render({"keda": {"enabled": True}, "networkPolicy": {"metricsFrom": [{"podSelector": {}}]}})
    monitor = next(
        r for r in keda.get("NetworkPolicy", "linkpulse-nats")["spec"]["ingress"] if r["ports"][0]["port"] == 8222
    )
    assert monitor["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}},
    ]


def test_service_passwords_can_be_given_for_renders_without_a_cluster() -> None:
    given = {
        "nats": {"auth": {"passwords": {"redirect": "natsRedirectGiven0123456789"}}},
        "redis": {"auth": {"userPasswords": {"admin": "redisAdminGiven0123456789"}}},
        "databaseRoles": {"passwords": {"ingest": "pgIngestGiven0123456789"}},
    }
    out = render(given)
    env = {c["name"]: out.environment(c) for _, c in out.linkpulse_containers()}
    assert env["redirect"]["LINKPULSE_NATS_URL"] == "nats://redirect:natsRedirectGiven0123456789@linkpulse-nats:4222"
    assert '"redirect", password: "natsRedirectGiven0123456789"' in out.secret_value("linkpulse-nats", "auth.conf")
    assert env["admin"]["LINKPULSE_REDIS_URL"] == "redis://admin:redisAdminGiven0123456789@linkpulse-redis:6379/0"
    assert out.secret_value("linkpulse-redis", "admin-password") == "redisAdminGiven0123456789"
    assert env["ingest"]["LINKPULSE_DATABASE_URL"].startswith(
        "postgresql://linkpulse_ingest_login:pgIngestGiven0123456789@"
    )
    assert env["setup"]["LINKPULSE_ROLES_INGEST_PASSWORD"] == "pgIngestGiven0123456789"
    with pytest.raises(HelmValuesError, match="pattern"):
        render({"nats": {"auth": {"passwords": {"redirect": "has space in it, long enough"}}}})
