"""The project's own facts, read once from where they are written: the source address (the root pyproject's
[project.urls]), the version and license every member declares, and the addresses derived from them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from tests.images.lockfile import pyproject

__all__ = ["LICENSE", "ROOT", "SOURCE_URL", "VERSION", "owner", "raw_url", "release_image"]

ROOT = Path(__file__).resolve().parents[2]
SOURCE_URL: str = pyproject("root")["project"]["urls"]["Source"]
"""https://github.com/<owner>/<repository>: the one place the project's address is written by hand."""
VERSION: str = pyproject("root")["project"]["version"]
LICENSE: str = pyproject("root")["project"]["license"]


def owner() -> str:
    """The GitHub owner of the repository, which names the release's image and chart registry path."""
    host, path = urlsplit(SOURCE_URL).netloc, urlsplit(SOURCE_URL).path.strip("/")
    assert host == "github.com" and path.count("/") == 1, f"not a GitHub repository address: {SOURCE_URL}"
    return path.split("/")[0]


def raw_url(path: str, ref: str = "main") -> str:
    """Where a file of the repository is served as is (the chart's icon)."""
    return f"https://raw.githubusercontent.com/{urlsplit(SOURCE_URL).path.strip('/')}/{ref}/{path}"


def release_image(service: str, version: str = VERSION) -> str:
    """The image the release workflow pushes for a service."""
    return f"ghcr.io/{owner()}/linkpulse-{service}:{version}"
