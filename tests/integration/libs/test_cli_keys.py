"""`linkpulse keys` as a user runs it (a subprocess) against the test database and the admin app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from linkpulse.admin.app import create_app
from linkpulse.admin.settings import AdminSettings
from linkpulse.localstack.servers import PostgresServer
from linkpulse.localstack.stack import StackInfo


def linkpulse(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m linkpulse.cli.main …` with no LINKPULSE_DATABASE_URL unless `env` sets it."""
    environ = {k: v for k, v in os.environ.items() if k != "LINKPULSE_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "linkpulse.cli.main", *args],
        cwd=cwd,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fields(stdout: str) -> dict[str, str]:
    """The `label  value` lines `keys create` prints."""
    return dict(line.split(None, 1) for line in stdout.splitlines() if line.strip())


@pytest.fixture
async def admin(service_env: dict[str, str]) -> AsyncIterator[AsyncTestClient]:
    """The admin app on this test's servers, with no bootstrap key: only CLI-made keys get in."""
    async with AsyncTestClient(app=create_app(AdminSettings.from_env(service_env))) as client:
        yield client


async def test_a_created_key_works_until_it_is_revoked(
    admin: AsyncTestClient, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    # Create: the key is printed once, with its id and prefix.
    created = linkpulse(
        "keys", "create", "--name", "ops laptop", "--scope", "links:read", "--scope", "stats:read",
        "--database-url", database_url, cwd=tmp_path,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    info = fields(created.stdout)
    key = info["key"]
    assert key.startswith("lp_") and len(key) == 46
    assert (info["name"], info["prefix"], info["scopes"], info["expires"]) == (
        "ops laptop",
        key[:8],
        "links:read stats:read",
        "never",
    )
    assert "shown only this once" in created.stderr and key not in created.stderr
    # Only the hash is stored.
    dump = await db.fetchval("SELECT string_agg(t::text, ' ') FROM api_keys t")
    assert key not in dump and key[8:] not in dump

    # The key authenticates against the admin API, with exactly its scopes.
    headers = {"Authorization": f"Bearer {key}"}
    assert (await admin.get("/api/v1/links/none", headers=headers)).status_code == 404
    assert (await admin.get("/api/v1/stats/overview", headers=headers)).status_code == 200
    assert (await admin.post("/api/v1/links", json={"url": "https://example.com"}, headers=headers)).status_code == 403

    # List: the record, never the key.
    listed = linkpulse("keys", "list", "--database-url", database_url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:5] == ["ID", "NAME", "PREFIX", "SCOPES", "STATUS"]
    assert info["id"] in row and "ops laptop" in row and key[:8] in row and "active" in row
    assert key[8:] not in listed.stdout
    as_json = json.loads(linkpulse("keys", "list", "--json", "--database-url", database_url, cwd=tmp_path).stdout)
    assert [(k["id"], k["name"], k["scopes"]) for k in as_json] == [
        (int(info["id"]), "ops laptop", ["links:read", "stats:read"])
    ]
    assert "key" not in as_json[0] and as_json[0]["last_used_at"] is not None

    # Revoke: the next request is refused.
    revoked = linkpulse("keys", "revoke", info["id"], "--database-url", database_url, cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.startswith(f"revoked API key {info['id']} ({key[:8]}")
    response = await admin.get("/api/v1/links/none", headers=headers)
    assert (response.status_code, response.json()["detail"]) == (401, "API key revoked")
    assert "revoked" in linkpulse("keys", "list", "--database-url", database_url, cwd=tmp_path).stdout
    # Again: harmless, and said so. An unknown id is an error.
    again = linkpulse("keys", "revoke", info["id"], "--database-url", database_url, cwd=tmp_path)
    assert again.returncode == 0 and "already revoked" in again.stdout
    unknown = linkpulse("keys", "revoke", "424242", "--database-url", database_url, cwd=tmp_path)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "linkpulse keys revoke: no API key with id 424242")


async def test_json_output_and_expiry(admin: AsyncTestClient, database_url: str, tmp_path: Path) -> None:
    expires = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    created = linkpulse(
        "keys", "create", "--name", "ci", "--scope", "admin", "--expires", expires.isoformat(), "--json",
        "--database-url", database_url, cwd=tmp_path,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert set(body) == {"id", "name", "prefix", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at",
                         "key"}  # fmt: skip
    assert datetime.fromisoformat(body["expires_at"]) == expires
    response = await admin.get("/api/v1/keys", headers={"Authorization": f"Bearer {body['key']}"})
    assert response.status_code == 200
    assert [k["id"] for k in response.json()] == [body["id"]]
    # A date means midnight UTC.
    dated = linkpulse(
        "keys", "create", "--name", "d", "--scope", "admin", "--expires", "2999-01-31", "--json",
        "--database-url", database_url, cwd=tmp_path,
    )  # fmt: skip
    assert json.loads(dated.stdout)["expires_at"] == "2999-01-31T00:00:00Z"


async def test_the_database_comes_from_the_environment_or_the_local_stack(database_url: str, tmp_path: Path) -> None:
    # $LINKPULSE_DATABASE_URL, when no flag is given.
    from_env = linkpulse("keys", "list", cwd=tmp_path, env={"LINKPULSE_DATABASE_URL": database_url})
    assert (from_env.returncode, from_env.stdout.strip()) == (0, "no API keys")
    # Else the stack.json of `linkpulse up`, in ./.linkpulse or in --dir.
    for state in (tmp_path / ".linkpulse", tmp_path / "elsewhere"):
        state.mkdir()
        info = StackInfo("http://r", "http://a", "lp_x", "nats://n", "redis://r", database_url)
        (state / "stack.json").write_text(info.to_json())
        found = linkpulse("keys", "list", "--dir", str(state), cwd=tmp_path)
        assert (found.returncode, found.stdout.strip()) == (0, "no API keys"), found.stderr
    assert linkpulse("keys", "list", cwd=tmp_path).returncode == 0  # the default ./.linkpulse


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--name", "x", "--scope", "links:delete"], "argument --scope: invalid choice: 'links:delete'"),
        (["create", "--name", "x"], "the following arguments are required: --scope"),
        (["create", "--name", "", "--scope", "admin"], "argument --name: name must not be blank"),
        (["create", "--name", "x", "--scope", "admin", "--expires", "next week"], "not an ISO 8601 date or time"),
        (["create", "--name", "x", "--scope", "admin", "--expires", "2030-01-01T10:00"], "give a timezone"),
        (["create", "--name", "x", "--scope", "admin", "--expires", "2001-01-01"], "--expires must be in the future"),
        (["revoke", "seven"], "argument id: invalid int value: 'seven'"),
    ],
)
def test_bad_input_gets_a_clear_message(database_url: str, tmp_path: Path, args: list[str], message: str) -> None:
    result = linkpulse("keys", *args, "--database-url", database_url, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_no_database_or_an_unusable_one_is_explained(postgres_server: PostgresServer, tmp_path: Path) -> None:
    nowhere = linkpulse("keys", "list", cwd=tmp_path)
    assert nowhere.returncode == 2
    assert "no database: give --database-url, set LINKPULSE_DATABASE_URL, or start a local stack" in nowhere.stderr
    # Unreachable: says where, never the password.
    refused = linkpulse("keys", "list", "--database-url", "postgresql://u:hunter2@127.0.0.1:1/db", cwd=tmp_path)
    assert refused.returncode == 1
    assert "linkpulse keys list: database postgresql://127.0.0.1:1/db:" in refused.stderr
    assert "hunter2" not in refused.stderr and "Traceback" not in refused.stderr
    # Reachable but never migrated.
    postgres_server.create_database("cli_unmigrated")
    try:
        bare = linkpulse("keys", "list", "--database-url", postgres_server.url_for("cli_unmigrated"), cwd=tmp_path)
    finally:
        postgres_server.psql('DROP DATABASE IF EXISTS "cli_unmigrated" WITH (FORCE)', database="postgres")
    assert bare.returncode == 1
    assert "no api_keys table: run `linkpulse migrate` first" in bare.stderr
