"""Linkpulse redirect service."""
