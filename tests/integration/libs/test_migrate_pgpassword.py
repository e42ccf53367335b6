"""`linkpulse migrate` with a DSN that carries no password and PGPASSWORD beside it: how the chart's setup
step logs in as the owner with timescaledb.auth.existingSecret or values-production.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from linkpulse.localstack.servers import PostgresServer

PASSWORD = "ownerPasswordOnlyInPgpassword01"


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """PostgreSQL with password (SCRAM) authentication: no login without the right password."""
    root = tmp_path_factory.mktemp("pg-password")
    server = PostgresServer(root / "data", log_path=root / "postgres.log", password=PASSWORD).start()
    yield server
    server.stop()


def migrate(dsn: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINKPULSE_", "PG"))}
    env |= {"LINKPULSE_DATABASE_URL": dsn, **extra}
    return subprocess.run(
        [sys.executable, "-m", "linkpulse.cli.main", "migrate"], env=env, capture_output=True, text=True, timeout=120
    )


def test_migrate_logs_in_with_pgpassword_when_the_dsn_has_none(password_server: PostgresServer) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{password_server.port}/{password_server.database}"
    refused = migrate(dsn)  # the server wants a password: without PGPASSWORD there is none
    assert refused.returncode != 0 and "password" in refused.stdout + refused.stderr, refused.stderr
    done = migrate(dsn, PGPASSWORD=PASSWORD)
    assert done.returncode == 0, done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr  # nothing logs it
    assert migrate(dsn, PGPASSWORD="not-the-password").returncode != 0
