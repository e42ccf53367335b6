"""docker-compose.yml's parts fit together, run here without Docker: NATS and Redis started from the compose
file's own configs, PostgreSQL with its superuser password, the setup service's command run with its
environment; then each service's URLs from the compose file log in and do the first thing that service does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from redis.asyncio import Redis
from tests.compose.interpolation import interpolate
from tests.compose.test_compose import COMPOSE, REQUIRED, config

from linkpulse.db.roles import login_role
from linkpulse.localstack.process import ManagedProcess, free_port, port_open
from linkpulse.localstack.servers import PostgresServer, find_binary
from linkpulse.messaging.connect import close, connect
from linkpulse.messaging.permissions import CLIENT_NAMES
from linkpulse.messaging.streams import click_subject, ingest_durable, link_subject
from linkpulse.settings import NatsSettings

START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """A .env with distinct URL-safe values, as the README's awk line makes them."""
    return {name: f"{i:02d}{name.lower().replace('_', '')}" for i, name in enumerate(sorted(REQUIRED))}


@pytest.fixture(scope="module")
def stack(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The compose file's servers on free local ports, set up by its setup command; yields the compose file with
    every `host:port` of a server replaced by where it runs here."""
    root = tmp_path_factory.mktemp("compose-stack")
    compose = interpolate(yaml.safe_load(COMPOSE.read_text()), env)
    ports = {"nats": free_port(), "redis": free_port()}
    nats_conf = config(compose, "nats.conf").replace("store_dir: /data", f"store_dir: {root / 'js'}")
    nats_conf = nats_conf.replace("0.0.0.0:4222", f"127.0.0.1:{ports['nats']}").replace("http: 127.0.0.1:8222\n", "")
    (root / "nats.conf").write_text(nats_conf)
    (root / "redis.conf").write_text(config(compose, "redis.conf"))
    processes = [
        ManagedProcess("nats", [find_binary("nats-server"), "-c", str(root / "nats.conf")], log_path=root / "nats.log"),
        ManagedProcess("redis", [find_binary("redis-server"), str(root / "redis.conf"), "--port", str(ports["redis"]),
                                 "--bind", "127.0.0.1", "--dir", str(root)], log_path=root / "redis.log"),
    ]  # fmt: skip
    postgres = PostgresServer(root / "postgres", password=env["POSTGRES_PASSWORD"])
    try:
        for process, port in zip(processes, ports.values(), strict=True):
            process.start().wait_ready(lambda port=port: port_open(port), START_TIMEOUT)
        ports["postgres"] = postgres.start().port
        assert postgres.database == compose["services"]["postgres"]["environment"]["POSTGRES_DB"]
        here = {f"{name}:{port}": f"127.0.0.1:{ports[name]}" for name, port in (("nats", 4222), ("redis", 6379),
                                                                               ("postgres", 5432))}  # fmt: skip
        for service in compose["services"].values():
            for name, value in service.get("environment", {}).items():
                for there, local in here.items():
                    value = value.replace(f"@{there}/", f"@{local}/").replace(f"@{there}", f"@{local}")
                service["environment"][name] = value
        yield compose
    finally:
        postgres.stop()
        for process in reversed(processes):
            process.stop()


@pytest.fixture(scope="module")
def set_up(stack: dict[str, Any]) -> dict[str, Any]:
    """The stack after the setup service's command ran with its environment, as compose runs it."""
    setup = stack["services"]["setup"]
    bin_dir = str(Path(sys.executable).parent)  # where `linkpulse` is installed
    environment = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **setup["environment"]}
    done = subprocess.run(setup["command"], env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "streams CLICKS and LINKS ready" in done.stdout
        and "login roles ready for admin, ingest, redirect" in done.stdout
    )
    return stack


@pytest.mark.parametrize("service", ["redirect", "ingest", "admin"])
async def test_each_service_logs_in_with_its_compose_urls_and_does_its_work(
    set_up: dict[str, Any], service: str
) -> None:
    environment = set_up["services"][service]["environment"]
    # Postgres: the login role the setup step made, with the password compose gives the service.
    db = await asyncpg.connect(environment["LINKPULSE_DATABASE_URL"])
    try:
        assert await db.fetchval("SELECT current_user") == login_role(service)
        assert await db.fetchval("SELECT count(*) FROM link_totals") == 0  # the one table all three read
    finally:
        await db.close()
    # NATS: its own user, through linkpulse.messaging as the service connects.
    async with asyncio.timeout(10):  # connect retries a refused login for ever, as a service should
        nc = await connect(NatsSettings(url=environment["LINKPULSE_NATS_URL"]), CLIENT_NAMES[service])
    try:
        js = nc.jetstream()
        if service == "redirect":
            assert (await js.publish(click_subject(0), b"{}", headers={"Nats-Msg-Id": "compose"})).stream == "CLICKS"
        elif service == "admin":
            assert (await js.publish(link_subject("compose"), b"{}")).stream == "LINKS"
        else:
            assert (await js.consumer_info("CLICKS", ingest_durable(0))).name == ingest_durable(0)
    finally:
        await close(nc, 2.0)
    # Redis: its ACL user, where the service has one.
    if "LINKPULSE_REDIS_URL" in environment:
        async with Redis.from_url(environment["LINKPULSE_REDIS_URL"]) as redis:
            assert await redis.set("link:compose", "{}") is True
