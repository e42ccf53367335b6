"""Migrations against a real PostgreSQL: ordered, recorded, idempotent, serialised by a lock."""

from __future__ import annotations

import asyncio

import asyncpg

from linkpulse.db.migrate import load_migrations, migrate
from linkpulse.localstack.servers import PostgresServer


async def test_concurrent_migrators_apply_each_migration_once(postgres_server: PostgresServer) -> None:
    # Two processes racing on an empty database: the advisory lock lets one apply, the other no-op.
    postgres_server.create_database("migrate_race")
    url = postgres_server.url_for("migrate_race")
    try:
        first, second = await asyncio.gather(migrate(url), migrate(url))
        expected = [m.version for m in load_migrations()]
        assert sorted(first + second) == expected
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
            assert [r["version"] for r in rows] == expected
            # Partitions for this month exist, so clicks never land in the default partition.
            parts = await conn.fetchval("SELECT count(*) FROM pg_inherits WHERE inhparent = 'click_events'::regclass")
            assert parts >= 3
        finally:
            await conn.close()
        # A third run finds nothing to do.
        assert await migrate(url) == []
    finally:
        postgres_server.psql('DROP DATABASE IF EXISTS "migrate_race" WITH (FORCE)', database="postgres")
