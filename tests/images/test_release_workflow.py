""".github/workflows/release.yml: a valid GitHub workflow (SchemaStore's schema) that, on a version tag, builds
the three images the Dockerfiles define for amd64 and arm64 under the names the chart and skaffold use, labels
them from the tag and the commit, and pushes the chart as an OCI artifact; its version check is run here."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from tests.images.project import ROOT, VERSION, owner, release_image
from tests.images.test_dockerfiles import parse

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
SCHEMAS = ROOT / "tests" / "data" / "schemas"
SERVICES = ("redirect", "ingest", "admin")


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    """The workflow as GitHub reads it (YAML 1.1 would turn the `on` key into True)."""
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True)
    return dict(data)


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def expand(text: str, service: str) -> str:
    """An expression-bearing string as the images job sees it for one service of the matrix."""
    known = {"matrix.service": service, "needs.version.outputs.owner": owner(),
             "needs.version.outputs.version": VERSION}  # fmt: skip
    return re.sub(r"\$\{\{ *([\w.]+) *\}\}", lambda m: known.get(m[1], m[0]), text)


def test_workflow_follows_the_github_workflow_schema(workflow: dict[str, Any]) -> None:
    schema_path = SCHEMAS / "github-workflow.json"
    data = schema_path.read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() in (SCHEMAS / "README.md").read_text()
    validator = jsonschema.Draft7Validator(json.loads(data))
    assert [e.message for e in validator.iter_errors(workflow)] == []
    broken = {**workflow, "jobs": {**workflow["jobs"], "chart": {**workflow["jobs"]["chart"], "runs_on": "x"}}}
    assert list(validator.iter_errors(broken)), "the schema refuses a misspelt key"


def test_it_runs_on_version_tags_only(workflow: dict[str, Any]) -> None:
    assert list(workflow["on"]) == ["push"] and list(workflow["on"]["push"]) == ["tags"]
    [pattern] = workflow["on"]["push"]["tags"]
    # GitHub's filter syntax: [0-9] a class, + one or more of what precedes, other characters literal.
    regex = re.compile("".join(t if t.startswith("[") or t == "+" else re.escape(t)
                               for t in re.findall(r"\[[^\]]*\]|.", pattern)))  # fmt: skip
    assert regex.fullmatch(f"v{VERSION}") and regex.fullmatch("v10.20.30")
    assert not any(regex.fullmatch(t) for t in ("0.1.0", "v1.2", "latest", "v1.2.3-rc1"))
    assert workflow["permissions"] == {"contents": "read"}  # jobs that push ask for packages: write themselves


@pytest.mark.parametrize("service", SERVICES)
def test_images_are_built_from_the_services_dockerfiles_under_the_names_the_chart_uses(
    workflow: dict[str, Any], service: str
) -> None:
    job = workflow["jobs"]["images"]
    assert job["strategy"]["matrix"]["service"] == list(SERVICES)
    assert job["permissions"]["packages"] == "write"
    [build] = steps_using(job, "docker/build-push-action")
    given = build["with"]
    assert given["context"] == "."  # as skaffold and compose build them: libs/ is in the context
    dockerfile = expand(given["file"], service)
    assert dockerfile == f"services/{service}/Dockerfile" and (ROOT / dockerfile).is_file()
    assert set(given["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert given["push"] is True
    assert expand(given["tags"], service) == release_image(service)
    skaffold = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert f"linkpulse-{service}" in [a["image"] for a in skaffold["build"]["artifacts"]]
    assert steps_using(job, "docker/setup-qemu-action") and steps_using(job, "docker/setup-buildx-action")


def test_images_are_labelled_from_the_tag_and_the_commit(workflow: dict[str, Any]) -> None:
    [build] = steps_using(workflow["jobs"]["images"], "docker/build-push-action")
    build_args = dict(line.split("=", 1) for line in build["with"]["build-args"].splitlines())
    # Exactly the ARGs the Dockerfiles turn into their version and revision labels.
    for service in SERVICES:
        runtime = parse((ROOT / "services" / service / "Dockerfile").read_text())[-1]
        assert {a.args.partition("=")[0] for a in runtime.all("ARG")} == set(build_args)
    assert build_args == {"VERSION": "${{ needs.version.outputs.version }}", "REVISION": "${{ github.sha }}"}
    labels = dict(line.split("=", 1) for line in build["with"]["labels"].splitlines())
    assert labels == {
        "org.opencontainers.image.created": "${{ needs.version.outputs.created }}",
        "org.opencontainers.image.source": "${{ github.server_url }}/${{ github.repository }}",
    }


def test_chart_is_packaged_and_pushed_as_an_oci_artifact_after_the_images(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["chart"]
    assert set(job["needs"]) == {"version", "images"} and job["permissions"]["packages"] == "write"
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert 'helm package charts/linkpulse --version "$VERSION" --app-version "$VERSION"' in script
    assert 'helm push "dist/linkpulse-$VERSION.tgz" "oci://ghcr.io/$OWNER/charts"' in script
    assert (ROOT / "charts" / "linkpulse" / "Chart.yaml").is_file()
    # Secrets reach the script through the environment, never pasted into it.
    assert "${{" not in script and "--password-stdin" in script


def test_no_host_but_the_projects_registry_is_named() -> None:
    hosts = set(re.findall(r"\b(?:[a-z0-9-]+\.)+(?:io|org|com|net|dev)\b", WORKFLOW.read_text()))
    assert hosts == {"ghcr.io"}


def version_check(workflow: dict[str, Any]) -> str:
    """The Python the version job runs between `<<'PY'` and `PY`."""
    [step] = [s for s in workflow["jobs"]["version"]["steps"] if s.get("id") == "version"]
    body = re.search(r"<<'PY'\n(.*?)\n\s*PY\n", step["run"], re.DOTALL)
    assert body, step["run"]
    return textwrap.dedent(body[1])


def test_the_version_check_passes_on_the_current_version_and_refuses_another(workflow: dict[str, Any]) -> None:
    code = version_check(workflow)
    assert subprocess.run([sys.executable, "-c", code, VERSION], cwd=ROOT).returncode == 0
    wrong = subprocess.run([sys.executable, "-c", code, "9.9.9"], cwd=ROOT, capture_output=True, text=True)
    assert wrong.returncode == 1 and "tag 9.9.9 but" in wrong.stderr and "Chart.yaml appVersion" in wrong.stderr


def test_readme_names_where_the_release_puts_things(workflow: dict[str, Any]) -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"`{release_image('<service>', 'X.Y.Z')}`" in readme
    script = "\n".join(step.get("run", "") for step in workflow["jobs"]["chart"]["steps"])
    assert "oci://ghcr.io/$OWNER/charts" in script and f"`oci://ghcr.io/{owner()}/charts/linkpulse`" in readme


def test_the_released_chart_pulls_the_released_images(workflow: dict[str, Any], tmp_path: Path) -> None:
    """The chart step's `sed` sets image.registry, and nothing else, to where the images job pushed them."""
    script = "\n".join(step.get("run", "") for step in workflow["jobs"]["chart"]["steps"])
    [line] = [line.strip() for line in script.splitlines() if line.strip().startswith("sed -i")]
    values = ROOT / "charts" / "linkpulse" / "values.yaml"
    copy = tmp_path / "charts" / "linkpulse" / "values.yaml"
    copy.parent.mkdir(parents=True)
    copy.write_text(values.read_text())
    subprocess.run(["bash", "-c", line], cwd=tmp_path, env={"OWNER": owner(), "PATH": "/usr/bin:/bin"}, check=True)
    before, after = yaml.safe_load(values.read_text()), yaml.safe_load(copy.read_text())
    assert after["image"]["registry"] == f"ghcr.io/{owner()}"
    assert {**after, "image": before["image"]} == before, "only image.registry changes"
    # The chart joins registry, repository and tag (appVersion) as release_image names them.
    repository = before["redirect"]["image"]["repository"]
    assert f"{after['image']['registry']}/{repository}:{VERSION}" == release_image("redirect")
