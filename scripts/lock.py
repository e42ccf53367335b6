"""Compile requirements/*.in into the hashed lock files requirements/*.txt (run from any folder)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

from uv import find_uv_bin

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
MEMBERS = ("libs", "services/redirect", "services/ingest", "services/admin")

# lock.txt first: every other file is compiled with `-c lock.txt`, so all of them agree on each version.
SUBSETS = ("stack", "build", "redirect", "ingest", "admin")


def member_names() -> list[str]:
    """The members' distribution names: installed from the working tree, never written into a lock."""
    return [tomllib.loads((ROOT / m / "pyproject.toml").read_text())["project"]["name"] for m in MEMBERS]


def compile_lock(name: str, *, upgrade: bool) -> None:
    """Run `uv pip compile` for requirements/<name>.in, writing requirements/<name>.txt.

    Args:
        name: The file stem: `lock`, or one of SUBSETS.
        upgrade: Let unpinned transitive dependencies move to their newest versions; otherwise the
            versions already in the .txt are kept wherever they still fit.
    """
    command = [
        find_uv_bin(),
        "pip",
        "compile",
        "--quiet",
        # One lock for every platform the project meets (Linux images on amd64 and arm64, macOS and Linux
        # development machines), with environment markers where a dependency is platform-specific.
        "--universal",
        "--python-version",
        "3.11",
        "--generate-hashes",
        # Names, versions and hashes only: no index URL, no file location (STYLE.md).
        "--no-emit-index-url",
        "--no-sources",
        "--custom-compile-command",
        "python scripts/lock.py",
        *(arg for member in member_names() for arg in ("--no-emit-package", member)),
        *(["--upgrade"] if upgrade else []),
        "--output-file",
        f"requirements/{name}.txt",
        f"requirements/{name}.in",
    ]
    if name == "lock":
        command += ["--group", "pyproject.toml:dev"]
    subprocess.run(command, cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    """Regenerate every lock file; the exit status is uv's first failure, or 0."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--upgrade", action="store_true", help="move unpinned transitive dependencies to their newest releases"
    )
    args = parser.parse_args(argv)
    try:
        for name in ("lock", *SUBSETS):
            compile_lock(name, upgrade=args.upgrade)
    except subprocess.CalledProcessError as failure:
        return failure.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
