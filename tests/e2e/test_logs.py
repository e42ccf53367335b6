"""Every line a service writes, from start to shutdown, is one JSON object: `linkpulse up`, traffic, `down`.

The services' own files are `logs/redirect.log`, `logs/admin.log` and `logs/ingest.log` (each process's
stdout and stderr). `nats.log`, `redis.log` and `postgres.log` are the servers' own formats, and the setup
steps (migrations, streams) run inside `linkpulse up`, which talks to the terminal, not to a log file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.polling import eventually

from linkpulse.localstack.process import free_port

from .test_stack import BROWSER, linkpulse

pytestmark = pytest.mark.slow

SERVICE_LOGS = ("redirect", "admin", "ingest")
LEVELS = {"debug", "info", "warning", "error", "critical"}


def parsed(path: Path) -> list[dict[str, Any]]:
    """Each line of `path` as JSON; fails naming the first line that is not one JSON object with the three fields."""
    lines = path.read_text().splitlines()
    assert lines, f"{path.name} is empty"
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{path.name}:{number} is not JSON: {line!r}")
        assert isinstance(record, dict), f"{path.name}:{number}: {line!r}"
        assert isinstance(record.get("event"), str), f"{path.name}:{number}: {line!r}"
        assert record.get("level") in LEVELS, f"{path.name}:{number}: {line!r}"
        assert datetime.fromisoformat(record["timestamp"]).utcoffset() is not None, f"{path.name}:{number}: {line!r}"
        assert isinstance(record.get("logger"), str), f"{path.name}:{number}: {line!r}"
        records.append(record)
    return records


async def test_every_service_line_from_start_to_shutdown_is_one_json_object(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINKPULSE_", "OTEL_"))}
    env.update({
        # Two worker processes for redirect and admin: each is a fresh interpreter that sets up its own logging.
        "LINKPULSE_HTTP_WORKERS": "2",
        # A trace collector that is down: the OpenTelemetry SDK says so through the standard library's logging.
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_TRACES_SAMPLER_ARG": "1.0",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    })  # fmt: skip
    root = tmp_path / "state"
    up = linkpulse("up", "--detach", "--dir", str(root), "--redirect-port", "0", "--admin-port", "0",
                   "--ingest-port", "0", env=env)  # fmt: skip
    assert up.returncode == 0, up.stderr + up.stdout
    try:
        info = json.loads((root / "stack.json").read_text())
        key = {"Authorization": f"Bearer {info['admin_key']}"}
        async with httpx.AsyncClient(base_url=info["admin_url"]) as admin:
            created = await admin.post("/api/v1/links", json={"url": "https://example.com/logs"}, headers=key)
            assert created.status_code == 201, created.text
            assert (await admin.get("/api/v1/links")).status_code == 401
            assert (await admin.get("/api/v1/links", headers={"Authorization": "Bearer lp_wrong"})).status_code == 401
        async with httpx.AsyncClient(base_url=info["redirect_url"], headers=BROWSER) as redirect:
            assert (await redirect.get(f"/{created.json()['code']}")).status_code == 302
            assert (await redirect.get("/no-such-code")).status_code == 404

        def exporter_failed() -> bool:
            return "opentelemetry.exporter" in (root / "logs" / "admin.log").read_text()

        await eventually(exporter_failed, "the admin's span exporter logging that the collector is down")
    finally:
        down = linkpulse("down", "--dir", str(root), env=env)
    assert down.returncode == 0, down.stderr + down.stdout

    logs = {name: parsed(root / "logs" / f"{name}.log") for name in SERVICE_LOGS}
    for name, records in logs.items():
        uvicorn = Counter(r["event"].split(" [")[0] for r in records if r["logger"] == "uvicorn.error")
        processes = 2 if name in ("redirect", "admin") else 1
        # uvicorn's own lines, at start and at shutdown, once per server process.
        assert uvicorn["Started server process"] == processes, (name, uvicorn)
        assert uvicorn["Application startup complete."] == processes, (name, uvicorn)
        assert uvicorn["Application shutdown complete."] == processes, (name, uvicorn)
        assert uvicorn["Finished server process"] == processes, (name, uvicorn)
        # Nothing printed its own plain text: a line lost to another format would have failed `parsed`.
        assert not any("Traceback" in r["event"] for r in records), name
    events = {name: [r["event"] for r in records] for name, records in logs.items()}
    assert "server.workers" in events["redirect"] and "server.workers" in events["admin"]
    assert "link.created" in events["admin"]
    assert events["ingest"].index("ingest.started") < events["ingest"].index("ingest.stopped")
    # A library's standard-library record (the SDK's exporter) comes out in the same shape as ours.
    exporter = [r for r in logs["admin"] if r["logger"].startswith("opentelemetry.exporter")]
    assert exporter and {r["level"] for r in exporter} <= {"warning", "error"}
    # The request inside a trace left its ids on the line it wrote.
    created_line = next(r for r in logs["admin"] if r["event"] == "link.created")
    assert len(created_line["trace_id"]) == 32 and len(created_line["span_id"]) == 16
    assert info["admin_key"] not in "".join((root / "logs" / f"{name}.log").read_text() for name in SERVICE_LOGS)
