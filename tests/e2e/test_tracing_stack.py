"""`linkpulse up` with only the standard variables `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_TRACES_SAMPLER=always_on`:
a click on a link the redirect already holds in its process cache is traced from the redirect into ingest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.polling import eventually

from linkpulse.ids import shard_for
from linkpulse.settings import ClicksSettings

pytestmark = pytest.mark.slow

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
SERVER, PRODUCER, CONSUMER = 2, 4, 5  # OTLP's span kinds
PERSONAL = {"client.address", "client.port", "http.client_ip", "user_agent.original", "http.user_agent", "net.peer.ip"}
EXPORT_WAIT = 60.0  # the batch processor's default schedule delay is 5 s; three processes, several rounds


def linkpulse(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linkpulse.cli.main", *args], env=env, capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, collector: OtlpReceiver) -> Iterator[dict[str, Any]]:
    """A detached stack traced by the two standard variables alone (none of ours, no other OTEL_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINKPULSE_", "OTEL_"))}
    env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_TRACES_SAMPLER": "always_on"}
    state = tmp_path_factory.mktemp("traced") / "state"
    up = linkpulse("up", "--detach", "--dir", str(state), "--redirect-port", "0", "--admin-port", "0", env=env)
    assert up.returncode == 0, up.stderr + up.stdout
    assert "sampler always_on" in up.stdout  # `up` says where traces go, and how they are sampled
    yield json.loads((Path(state) / "stack.json").read_text())
    linkpulse("down", "--dir", str(state), env=env)


def named(spans: list[ReceivedSpan], name: str, service: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name and s.service == service]


def assert_stable_http(span: ReceivedSpan, method: str, path: str, status: int, route: str) -> None:
    expected = {"http.request.method": method, "url.path": path, "http.response.status_code": status}
    expected["http.route"] = route
    assert {name: span.attributes.get(name) for name in expected} == expected
    assert not (PERSONAL | {"url.query", "http.method", "http.status_code"}) & set(span.attributes), span.attributes


async def test_a_cached_click_is_traced_from_the_redirect_into_ingest(
    stack: dict[str, Any], collector: OtlpReceiver
) -> None:
    # 1. A link made through the admin API; its creation reaches the redirect's cache listener (traced too).
    async with httpx.AsyncClient(base_url=stack["admin_url"], headers={"user-agent": CHROME}) as admin:
        resp = await admin.post("/api/v1/links", json={"url": "https://example.com/traced"},
                                headers={"Authorization": f"Bearer {stack['admin_key']}"})  # fmt: skip
    assert resp.status_code == 201, resp.text
    code = resp.json()["code"]
    await eventually(lambda: named(collector.snapshot(), "process links.*", "linkpulse-redirect"),
                     "the redirect saw the link's creation", timeout=EXPORT_WAIT)  # fmt: skip

    # 2. Followed once (a miss: it is then in the process cache), then again: the cached click.
    async with httpx.AsyncClient(base_url=stack["redirect_url"], headers={"user-agent": CHROME}) as client:
        for _ in range(2):
            assert (await client.get(f"/{code}?token=s3cret", follow_redirects=False)).status_code == 302

    def cached_click() -> tuple[ReceivedSpan, ReceivedSpan, ReceivedSpan, ReceivedSpan] | None:
        """The second request's server span, its click's create span, the publish and the batch linked to it."""
        spans = collector.snapshot()
        servers = sorted(named(spans, "GET /{code}", "linkpulse-redirect"), key=lambda s: s.start)
        if len(servers) < 2:
            return None
        creates = [
            s for s in named(spans, "create clicks.*", "linkpulse-redirect") if s.parent_span_id == servers[1].span_id
        ]
        if not creates:
            return None
        create = (creates[0].trace_id, creates[0].span_id)
        publishes = [s for s in named(spans, "publish clicks.*", "linkpulse-redirect") if create in s.links]
        batches = [s for s in named(spans, "process clicks.*", "linkpulse-ingest") if create in s.links]
        return (servers[1], creates[0], publishes[0], batches[0]) if publishes and batches else None

    server, create, publish, batch = await eventually(cached_click, "the cached click's trace", timeout=EXPORT_WAIT)

    # 3. The second request was answered from the process cache: no Redis or Postgres call under it.
    children = [s for s in collector.snapshot() if s.parent_span_id == server.span_id]
    assert [s.name for s in children] == ["create clicks.*"]
    assert server.kind == SERVER and create.trace_id == server.trace_id
    assert_stable_http(server, "GET", f"/{code}", 302, "/{code}")

    # 4. Messaging conventions on the publish and on ingest's batch, with the link's shard and NATS's address.
    shard = str(shard_for(code, ClicksSettings().shards))
    nats = urlsplit(stack["nats_url"])
    for span, operation, kind in ((publish, "publish", PRODUCER), (batch, "process", CONSUMER)):
        assert span.kind == kind
        expected = {
            "messaging.system": "nats",
            "messaging.operation.name": operation,
            "messaging.operation.type": "send" if operation == "publish" else "process",
            "messaging.destination.name": f"clicks.{shard}",
            "messaging.destination.partition.id": shard,
            "server.address": nats.hostname,
            "server.port": nats.port,
        }
        assert {name: span.attributes.get(name) for name in expected} == expected
    assert batch.attributes["messaging.batch.message_count"] >= 1
    assert create.attributes["messaging.destination.partition.id"] == shard

    # 5. The admin request that made the link: the same stable names, nothing of the client either.
    [made] = named(collector.snapshot(), "POST /api/v1/links", "linkpulse-admin")
    assert_stable_http(made, "POST", "/api/v1/links", 201, "/api/v1/links")
