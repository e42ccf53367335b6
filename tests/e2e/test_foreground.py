"""`linkpulse up` in the foreground: SIGTERM stops services first, so queued clicks reach NATS and are kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from tests.polling import eventually

from linkpulse.localstack.process import pid_alive

from .test_stack import BROWSER, linkpulse

pytestmark = pytest.mark.slow


def wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float) -> None:
    """Wait for `up` to write stack.json; fail early if it exited."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "stack.json never appeared"
        time.sleep(0.1)


async def test_sigterm_drains_clicks_and_a_restart_stores_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINKPULSE_")}
    env["LINKPULSE_CLICKS_SHARDS"] = "2"
    # Clicks wait a minute in the redirect's memory before publishing: only the drain can save them.
    slow_env = {**env, "LINKPULSE_PUBLISHER_LINGER": "60"}
    argv = [sys.executable, "-m", "linkpulse.cli.main", "up", "--dir", str(state),
            "--redirect-port", "0", "--admin-port", "0"]  # fmt: skip
    proc = subprocess.Popen(argv, env=slow_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(state / "stack.json", proc, timeout=120)
        info = json.loads((state / "stack.json").read_text())
        auth = {"Authorization": f"Bearer {info['admin_key']}"}
        async with httpx.AsyncClient(base_url=info["admin_url"], headers=auth) as admin:
            created = await admin.post("/api/v1/links", json={"url": "https://example.com/d", "code": "drain"})
            assert created.status_code == 201, created.text
        async with httpx.AsyncClient(base_url=info["redirect_url"], headers=BROWSER) as client:
            for _ in range(200):
                assert (await client.get("/drain")).status_code == 302
        conn = await asyncpg.connect(info["database_url"])
        assert await conn.fetchval("SELECT count(*) FROM click_events") == 0  # all still in memory
        await conn.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert not any(pid and pid_alive(pid) for pid in info["pids"].values()), err
    assert not (state / "stack.json").exists()

    # Start again on the same data: the 200 clicks were stored during shutdown or wait in JetStream.
    result = linkpulse("up", "--detach", "--dir", str(state), "--redirect-port", "0", "--admin-port", "0", env=env)
    assert result.returncode == 0, result.stderr
    try:
        again = json.loads((state / "stack.json").read_text())
        conn = await asyncpg.connect(again["database_url"])
        try:

            async def stored() -> int:
                return int(await conn.fetchval("SELECT count(DISTINCT id) FROM click_events WHERE code = 'drain'"))

            assert await eventually(stored, "200 clicks stored", accept=lambda n: n >= 200, timeout=20) == 200
            assert await conn.fetchval("SELECT clicks FROM link_totals t JOIN links l ON l.id = t.link_id "
                                       "WHERE l.code = 'drain'") == 200  # fmt: skip
        finally:
            await conn.close()
    finally:
        linkpulse("down", "--dir", str(state), env=env)
