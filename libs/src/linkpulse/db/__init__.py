"""Postgres: the pool, migrations and login roles, the `api_keys` SQL, outage errors and query timing."""
