"""Linkpulse ingest service."""
