"""The bundled Redis and TimescaleDB passwords from the user's Secrets (existingSecret), so renders without
a cluster (`helm template`, Argo CD) generate nothing; and the Redis start script, run with a real server
(charts/linkpulse/tests/dependencies_test.yaml and config_test.yaml hold the helm-unittest cases)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import pytest
import redis
from tests.chart.conftest import EXISTING_SECRETS, Rendered, render
from tests.chart.test_conventions import assert_valid
from tests.polling import eventually

from linkpulse.localstack.access import REDIS_USERS
from linkpulse.localstack.process import free_port, port_open
from linkpulse.localstack.servers import find_binary

EXISTING = {
    "redis": {"auth": {"existingSecret": "lp-redis-auth"}},
    "timescaledb": {"auth": {"existingSecret": "lp-db-auth"}},
}
# Everything else the chart would generate, given: then two renders must be the same.
PINNED = {
    **EXISTING,
    "admin": {"key": "lp_PinnedAdminKeyForChartTests_0123456789abcd"},
    "nats": {
        "auth": {
            "passwords": {u: f"nats{u.capitalize()}Pinned0123456789" for u in ("setup", "redirect", "admin", "ingest")}
        }
    },
    "databaseRoles": {
        "passwords": {s: f"role{s.capitalize()}Pinned0123456789" for s in ("redirect", "ingest", "admin")}
    },
}


def _containers(out: Rendered) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for _, c in out.linkpulse_containers()}


def _secrets(out: Rendered) -> dict[str, dict[str, str]]:
    return {s["metadata"]["name"]: s.get("data", {}) for s in out.of_kind("Secret")}


def test_existing_secrets_feed_the_servers_and_the_services() -> None:
    out = render(EXISTING | {"setup": {"initContainer": "always"}}, install=False)
    assert_valid(out)
    assert out.find("Secret", "linkpulse-redis") is None and out.find("Secret", "linkpulse-timescaledb") is None
    # The servers read the user's Secret.
    tsdb = out.get("StatefulSet", "linkpulse-timescaledb")["spec"]["template"]["spec"]["containers"][0]
    assert out.environment(tsdb)["POSTGRES_PASSWORD"] == EXISTING_SECRETS[("lp-db-auth", "password")]
    redis_pod = out.get("StatefulSet", "linkpulse-redis")["spec"]["template"]["spec"]["containers"][0]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in redis_pod["env"]} == {"lp-redis-auth"}
    env = {name: out.environment(c) for name, c in _containers(out).items()}
    # Redis: each service logs in as its own user, the password put into the URL by Kubernetes.
    for service in ("redirect", "admin"):
        password = EXISTING_SECRETS[("lp-redis-auth", f"{service}-password")]
        assert env[service]["LINKPULSE_REDIS_URL"] == f"redis://{service}:{password}@linkpulse-redis:6379/0"
        names = [e["name"] for e in _containers(out)[service]["env"]]
        assert names.index("REDIS_USER_PASSWORD") < names.index("LINKPULSE_REDIS_URL")  # defined before use
    # Postgres: the owner's DSN carries no password; the containers using it get PGPASSWORD.
    owner = EXISTING_SECRETS[("lp-db-auth", "password")]
    for setup in ("setup", "migrate"):
        assert env[setup]["LINKPULSE_DATABASE_URL"] == "postgresql://linkpulse@linkpulse-timescaledb:5432/linkpulse"
        assert env[setup]["PGPASSWORD"] == owner
    for service in ("redirect", "ingest", "admin"):  # services log in as their roles, with their own passwords
        assert env[service]["LINKPULSE_DATABASE_URL"].startswith(f"postgresql://linkpulse_{service}_login:")
        assert "PGPASSWORD" not in env[service]
    # None of the user's passwords is copied into the chart's objects.
    text = json.dumps(out.objects) + " ".join(
        base64.b64decode(v).decode() for data in _secrets(out).values() for v in data.values()
    )
    assert [v for (name, _), v in EXISTING_SECRETS.items() if name.startswith("lp-") and v in text] == []


def test_without_service_roles_every_owner_dsn_container_gets_pgpassword() -> None:
    out = render(EXISTING | {"databaseRoles": {"enabled": False}})
    for name, container in _containers(out).items():
        env = out.environment(container)
        if "LINKPULSE_DATABASE_URL" in env:
            assert env["PGPASSWORD"] == EXISTING_SECRETS[("lp-db-auth", "password")], name


def test_with_existing_secrets_and_given_passwords_renders_are_identical() -> None:
    # What Argo CD does on every sync: render without a cluster (no lookup), then compare.
    first, second = render(PINNED, install=False), render(PINNED, install=False)
    assert first.objects == second.objects
    assert set(_secrets(first)) == {"linkpulse", "linkpulse-setup", "linkpulse-nats"}
    # Without them the bundled passwords are new random ones each time: what existingSecret prevents.
    assert _secrets(render({})) != _secrets(render({}))


def test_checksum_rolls_the_pods_when_an_existing_secret_is_named() -> None:
    def checksum(values: dict[str, Any]) -> str:
        pod = render(values).get("Deployment", "linkpulse-redirect")["spec"]["template"]["metadata"]
        return str(pod["annotations"]["checksum/connections"])

    assert checksum({}) != checksum({"redis": {"auth": {"existingSecret": "lp-redis-auth"}}})


@pytest.mark.parametrize("value", ["Has_Upper", "-dash", "a" * 254])
def test_schema_refuses_a_secret_name_kubernetes_would(value: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="existingSecret"):
        render({"timescaledb": {"auth": {"existingSecret": value}}})


async def test_the_redis_start_script_gives_each_user_its_rules(tmp_path: Path) -> None:
    """The rendered start script, run with the redis-server of the wheel: the ACL file it writes works."""
    out = render(EXISTING)
    container = out.get("StatefulSet", "linkpulse-redis")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    port = free_port()
    script = container["args"][0].replace("/run/redis", str(tmp_path)) + f" --port {port} --bind 127.0.0.1"
    env = {e["name"]: out.secret_value(**e["valueFrom"]["secretKeyRef"]) for e in container["env"]}
    env["PATH"] = f"{Path(find_binary('redis-server')).parent}{os.pathsep}{os.environ['PATH']}"
    clients: list[redis.Redis] = []

    def login(user: str, password: str) -> redis.Redis:
        clients.append(redis.Redis(host="127.0.0.1", port=port, username=user, password=password))
        return clients[-1]

    with subprocess.Popen(
        ["/bin/sh", "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as server:
        try:
            await eventually(lambda: port_open(port), "redis-server listening")
            assert (tmp_path / "redis.conf").stat().st_mode & 0o077 == 0  # umask 077: only its owner reads it
            default = login("default", env["REDISCLI_AUTH"])
            assert default.ping() and default.config_get("maxmemory") == {"maxmemory": str(192 * 1024 * 1024)}
            assert set(default.acl_users()) == {"default", *REDIS_USERS}
            redirect = login("redirect", env["REDIS_REDIRECT_PASSWORD"])
            assert redirect.set("link:abc", "x") and redirect.get("link:abc") == b"x"
            with pytest.raises(redis.exceptions.NoPermissionError):
                redirect.delete("link:abc")  # the redirect may fill the cache, never evict
            admin = login("admin", env["REDIS_ADMIN_PASSWORD"])
            assert admin.delete("link:abc") == 1
            with pytest.raises(redis.exceptions.AuthenticationError):
                login("admin", env["REDIS_REDIRECT_PASSWORD"]).ping()
        finally:
            for client in clients:
                client.close()
            server.terminate()
            server.wait(timeout=10)
