"""Schema-driven fuzzing of the admin API (schemathesis against its own /schema): no 5xx, no bad URL accepted."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from tests.conftest import TEMPLATE_DB

from linkpulse.admin.app import create_app
from linkpulse.admin.settings import AdminSettings
from linkpulse.hosts import non_public_reason
from linkpulse.localstack.process import ManagedProcess, free_port
from linkpulse.localstack.servers import NatsServer, PostgresServer, RedisServer
from linkpulse.messaging.streams import ensure_streams_at
from linkpulse.settings import ClicksSettings

KEY = "lp_" + "f" * 43
FUZZ_DB = "fuzz"


@pytest.fixture(scope="module")
def admin_url(
    postgres_server: PostgresServer, nats_server: NatsServer, redis_server: RedisServer, tmp_path_factory: Any
) -> Iterator[str]:
    """A real admin process on its own database, shared by every fuzz case of this module."""
    postgres_server.create_database(FUZZ_DB, template=TEMPLATE_DB)
    asyncio.run(ensure_streams_at(nats_server.url, ClicksSettings(shards=4, max_bytes=64 * 1024**2)))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LINKPULSE_")},
        "LINKPULSE_DATABASE_URL": postgres_server.url_for(FUZZ_DB),
        "LINKPULSE_NATS_URL": nats_server.url,
        "LINKPULSE_REDIS_URL": redis_server.url,
        "LINKPULSE_HTTP_PORT": str(port),
        "LINKPULSE_ADMIN_KEY": KEY,
        "LINKPULSE_ADMIN_PUBLIC_URL": "http://short.test",
    }
    log = Path(tmp_path_factory.mktemp("fuzz")) / "admin.log"
    proc = ManagedProcess("admin", [sys.executable, "-m", "linkpulse.admin"], log_path=log, env=env).start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    proc.wait_ready(ready, 60)
    # What the process serves is the document the cases were generated from.
    with urllib.request.urlopen(f"{url}/schema/openapi.json", timeout=5) as resp:
        served = json.loads(resp.read())
    assert served["paths"].keys() == schema.raw_schema["paths"].keys()
    yield url
    proc.stop()
    # 5xx answers log a traceback; none may appear (schemathesis fails the case too, this is belt and braces).
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]
    postgres_server.psql(f'DROP DATABASE IF EXISTS "{FUZZ_DB}" WITH (FORCE)', database="postgres")


# The document the app serves at /schema, built without starting it: schemathesis needs it at
# collection time, before any fixture has started a server.
# Revoking keys is left out: a fuzzed DELETE /keys/{id} would revoke the fuzzer's own key and leave
# every later case a 401 (test_keys.py covers revocation).
schema = schemathesis.openapi.from_dict(create_app(AdminSettings()).openapi_schema.to_schema()).exclude(
    method="DELETE", path_regex="^/api/v1/keys"
)


def accepted_urls_are_safe(ctx: Any, response: Any, case: Any) -> None:
    """A link the API accepted has an http(s) public target with a host, no credentials, no control characters."""
    if response.status_code not in (200, 201) or "links" not in case.path:
        return
    content_type = response.headers.get("content-type", [""])  # schemathesis keeps header values as lists
    if not str(content_type[0] if isinstance(content_type, list) else content_type).startswith("application/json"):
        return  # the CSV export: its URLs came from links accepted (and checked) here before
    body = response.json()
    items = body.get("items", [body]) if isinstance(body, dict) else []
    for item in items:
        url = item.get("url") if isinstance(item, dict) else None
        if url is None:
            continue
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https"), url
        assert parts.hostname, url
        assert non_public_reason(parts.hostname) is None, url
        assert parts.username is None and parts.password is None, url
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in url), url
        assert len(url.encode()) <= 2048, url


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_never_answers_5xx_nor_accepts_a_bad_url(case: Any, admin_url: str) -> None:
    response = case.call(base_url=admin_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    case.validate_response(response, checks=[not_a_server_error, accepted_urls_are_safe])
