"""Linkpulse admin service."""
