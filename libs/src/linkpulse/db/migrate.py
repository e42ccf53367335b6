"""Ordered, versioned SQL migrations under an advisory lock, so two processes never migrate at once."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

from linkpulse.db.roles import ensure_login_roles

__all__ = ["Migration", "MigrationError", "applied_versions", "load_migrations", "migrate"]

# Any fixed number works; it only has to be the same in every process that migrates.
_LOCK_ID = 0x6C696E6B70756C73  # "linkpuls"
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")

log = structlog.get_logger(__name__)


class MigrationError(RuntimeError):
    """The database and the migration files disagree (an applied file was edited, or is missing)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """Every `NNNN_name.sql` shipped in `linkpulse.db.migrations`, in version order."""
    found = []
    for entry in resources.files("linkpulse.db.migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


async def applied_versions(conn: asyncpg.Connection) -> dict[int, str]:
    """Version → checksum of every applied migration (empty on a new database)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {r["version"]: r["checksum"] for r in rows}


async def migrate(dsn: str, login_passwords: Mapping[str, str] | None = None) -> list[int]:
    """Apply pending migrations, each in its own transaction; return the versions applied.

    `login_passwords` (service → password) then creates or updates each service's login role
    (linkpulse.db.roles), under the same lock, so two setup steps never race on CREATE ROLE.
    """
    migrations = load_migrations()
    conn = await asyncpg.connect(dsn)
    try:
        # Session-level lock: a second migrator waits here, then finds nothing left to do.
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = await applied_versions(conn)
            known = {m.version: m for m in migrations}
            for version, checksum in done.items():
                if version not in known:
                    raise MigrationError(f"database has migration {version}, which this release lacks")
                if known[version].checksum != checksum:
                    raise MigrationError(f"migration {version} was edited after it was applied")
            applied = []
            for m in migrations:
                if m.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        m.version,
                        m.name,
                        m.checksum,
                    )
                log.info("migration.applied", version=m.version, name=m.name)
                applied.append(m.version)
            if login_passwords:
                roles = await ensure_login_roles(conn, login_passwords)
                log.info("roles.ensured", roles=roles)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    finally:
        await conn.close()
