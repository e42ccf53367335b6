"""What the project says about itself agrees everywhere: the Apache-2.0 license (LICENSE, every pyproject, each
package's own copy), one version, the source address written once (the root pyproject's [project.urls]) and
repeated by the chart's metadata, the chart's Artifact Hub annotations (images as the release pushes them and
as values.yaml bundles them), and a changelog in the Keep a Changelog shape."""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from tests.images.lockfile import MEMBERS, pyproject
from tests.images.project import LICENSE, ROOT, SOURCE_URL, VERSION, raw_url, release_image

CHART = ROOT / "charts" / "linkpulse"
SERVICES = ("redirect", "ingest", "admin")
# sha256 of the Apache License 2.0 as the ASF publishes it (LICENSE-2.0.txt), appendix included.
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
# Kinds Artifact Hub accepts in artifacthub.io/changes.
CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}


def member_folder(member: str) -> Any:
    return ROOT / ("libs" if member == "libs" else f"services/{member}")


@pytest.fixture(scope="module")
def chart() -> dict[str, Any]:
    """charts/linkpulse/Chart.yaml."""
    return dict(yaml.safe_load((CHART / "Chart.yaml").read_text()))


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    """The chart's default values."""
    return dict(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_license_is_the_apache_2_text_and_every_package_ships_it() -> None:
    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_SHA256
    assert LICENSE == "Apache-2.0"
    for member in MEMBERS:
        # PEP 639 forbids license files outside the project folder, so each member holds the same file.
        assert (member_folder(member) / "LICENSE").read_bytes() == text, member


@pytest.mark.parametrize("member", ["root", *MEMBERS])
def test_every_pyproject_declares_the_license_the_pep_639_way(member: str) -> None:
    project = pyproject(member)["project"]
    assert project["license"] == LICENSE  # an SPDX expression, not the legacy {file = ...} table
    assert project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))  # PEP 639 forbids both
    assert project["version"] == VERSION
    if member != "root":
        # hatchling writes License-Expression and ships license-files from 1.27 on.
        [backend] = [Requirement(r) for r in pyproject(member)["build-system"]["requires"]]
        [pin] = backend.specifier
        assert backend.name == "hatchling" and Version(pin.version) >= Version("1.27")


def test_the_source_address_is_written_once_and_repeated_faithfully(chart: dict[str, Any]) -> None:
    root_urls = pyproject("root")["project"]["urls"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", SOURCE_URL)
    assert root_urls["Homepage"] == SOURCE_URL
    assert root_urls["Changelog"] == f"{SOURCE_URL}/blob/main/CHANGELOG.md"
    for member in MEMBERS:
        assert pyproject(member)["project"]["urls"] == {"Source": SOURCE_URL}, member
    assert chart["home"] == SOURCE_URL and chart["sources"] == [SOURCE_URL]
    links = yaml.safe_load(chart["annotations"]["artifacthub.io/links"])
    assert links == [{"name": "Source", "url": SOURCE_URL}, {"name": "Changelog", "url": root_urls["Changelog"]}]


def test_chart_icon_is_the_repositorys_svg(chart: dict[str, Any]) -> None:
    path = "docs/logo.svg"
    assert chart["icon"] == raw_url(path)
    root = ET.parse(ROOT / path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 64 64"


def test_chart_carries_the_project_version_and_license(chart: dict[str, Any]) -> None:
    # The release workflow refuses a tag that differs from any of these.
    assert chart["version"] == chart["appVersion"] == VERSION
    assert chart["annotations"]["artifacthub.io/license"] == LICENSE


def test_artifact_hub_images_are_the_released_and_the_bundled_ones(
    chart: dict[str, Any], values: dict[str, Any]
) -> None:
    listed = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    ours = [
        {"name": values[s]["image"]["repository"], "image": release_image(s, chart["appVersion"])} for s in SERVICES
    ]
    assert [values[s]["image"]["repository"] for s in SERVICES] == [f"linkpulse-{s}" for s in SERVICES]
    # Every other image of values.yaml, at any depth (the NATS exporter sits under nats), is a bundled one at its
    # default tag, named by its path.
    bundled = [
        {"name": "-".join(path), "image": f"{image['repository']}:{image['tag']}"}
        for path, image in _images(values)
        if path[0] not in SERVICES
    ]
    assert [b["name"] for b in bundled] == ["nats", "nats-exporter", "redis", "timescaledb"]
    assert listed == ours + bundled


def _images(section: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """(path, image) of every `image:` mapping with a repository, in values.yaml's order."""
    found = []
    for key, value in section.items():
        if not isinstance(value, dict):
            continue
        if key == "image" and "repository" in value:
            found.append((path, value))
        else:
            found += _images(value, (*path, key))
    return found


def test_artifact_hub_changes_use_its_kinds(chart: dict[str, Any]) -> None:
    changes = yaml.safe_load(chart["annotations"]["artifacthub.io/changes"])
    assert changes and all(set(c) == {"kind", "description"} and c["kind"] in CHANGE_KINDS for c in changes)


def test_changelog_follows_keep_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "# Changelog" and "https://keepachangelog.com/en/1.1.0/" in text
    releases = [line for line in lines if line.startswith("## ")]
    assert releases[0] == "## [Unreleased]"
    for release in releases[1:]:
        assert re.fullmatch(r"## \[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", release), release
    sections = {line for line in lines if line.startswith("### ")}
    assert sections and sections <= {f"### {kind.capitalize()}" for kind in CHANGE_KINDS}
    # Each release heading is a link, to this repository.
    for name in (release[4:].partition("]")[0] for release in releases):
        [target] = re.findall(rf"^\[{re.escape(name)}\]: (\S+)$", text, re.MULTILINE)
        assert target.startswith(f"{SOURCE_URL}/")
