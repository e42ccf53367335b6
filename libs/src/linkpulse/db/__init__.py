"""Postgres: the connection pool and the migration runner."""
