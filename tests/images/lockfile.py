"""The hashed lock files under requirements/, read as pip reads them, and dependency closures of installed dists."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
MEMBERS = {"libs": "linkpulse-libs", "redirect": "linkpulse-redirect", "ingest": "linkpulse-ingest",
           "admin": "linkpulse-admin"}  # fmt: skip
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})\Z")


@dataclass(frozen=True)
class Entry:
    """One requirement line of a lock: `name==version ; marker --hash=sha256:... ...`."""

    line: str
    """The logical line, continuations joined, comments dropped."""
    requirement: Requirement
    hashes: frozenset[str]

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def version(self) -> str:
        """The pinned version; ValueError unless the specifier is exactly one `==`."""
        [spec] = self.requirement.specifier
        if spec.operator != "==" or "*" in spec.version:
            raise ValueError(f"not an exact pin: {self.line}")
        return spec.version

    def applies(self) -> bool:
        """Whether pip installs this line here (its environment marker, if any, holds on this interpreter)."""
        return self.requirement.marker is None or self.requirement.marker.evaluate()


def entries(path: Path) -> list[Entry]:
    """Every requirement line of a lock file; an option line (`-e`, `--index-url`, `-c`) becomes an Entry whose
    requirement fails to parse, so callers see it rather than skip it."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        if pending or line.strip():
            logical.append((pending + line.strip()).strip())
        pending = ""
    result = []
    for line in logical:
        words = line.split(" --hash=")
        hashes = frozenset(m.group(1) for w in words[1:] if (m := HASH.match("--hash=" + w)))
        if len(hashes) != len(words) - 1:
            raise ValueError(f"a hash that is not sha256 hex: {line}")
        result.append(Entry(line, Requirement(words[0]), hashes))
    return result


def locked(name: str) -> dict[str, Entry]:
    """requirements/<name>.txt by distribution name: only the lines that apply on this interpreter."""
    result: dict[str, Entry] = {}
    for entry in entries(REQUIREMENTS / f"{name}.txt"):
        if entry.applies():
            assert entry.name not in result, f"{name}.txt: {entry.name} twice for one environment"
            result[entry.name] = entry
    return result


def pyproject(member: str) -> dict:
    """A member's pyproject.toml (`root` for the workspace root)."""
    folder = ROOT if member == "root" else ROOT / ("libs" if member == "libs" else f"services/{member}")
    return tomllib.loads((folder / "pyproject.toml").read_text())


def closure(roots: list[Requirement]) -> dict[str, str]:
    """Every installed distribution the roots need, transitively, with its installed version.

    Requirements are followed as pip follows them: markers evaluated here, with the extras each
    distribution was asked for. A requirement that applies but is not installed fails the walk.
    """
    found: dict[str, str] = {}
    extras_done: set[tuple[str, str]] = set()
    pending = [(r, "") for r in roots]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as missing:
            raise AssertionError(f"{name} is needed but not installed") from missing
        asked = {""} | {canonicalize_name(e) for e in requirement.extras}
        todo = {e for e in asked if (name, e) not in extras_done}
        if not todo:
            continue
        found[name] = dist.version
        for wanted in todo:
            extras_done.add((name, wanted))
            pending += [(Requirement(r), wanted) for r in dist.requires or []]
    return found
