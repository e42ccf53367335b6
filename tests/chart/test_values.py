"""values.yaml and its schema (the dashboards the chart ships: test_dashboards.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from tests.chart.conftest import CHART

REPO = CHART.parents[1]


@pytest.fixture(scope="module")
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"redirect": {"replicas": "three"}}, "/redirect/replicas"),
        ({"redirect": {"replicaCount": 3}}, "replicaCount"),
        ({"unknownTopLevel": True}, "unknownTopLevel"),
        ({"nats": {"enabled": "yes"}}, "/nats/enabled"),
        ({"nats": {"replicas": 2}}, "/nats/replicas"),
        ({"config": {"clicks": {"shards": 0}}}, "/config/clicks/shards"),
        ({"redirect": {"logLevel": "verbose"}}, "/redirect/logLevel"),
        ({"ingest": {"metricsPort": 70000}}, "/ingest/metricsPort"),
        ({"ingest": {"retentionDays": -1}}, "/ingest/retentionDays"),
        ({"externalDatabase": {"url": "mysql://db/x"}}, "/externalDatabase/url"),
        ({"redirect": {"resources": {"requests": {"cpu": "lots"}}}}, "/redirect/resources/requests/cpu"),
        ({"ingest": {"resources": {"limits": None}}}, "/ingest/resources"),  # limits are required
        ({"setup": {"initContainer": "sometimes"}}, "/setup/initContainer"),
        # Shapes shared through definitions still refuse wrong values wherever they are used.
        ({"admin": {"probes": {"liveness": {"periodSeconds": 0}}}}, "/admin/probes/liveness/periodSeconds"),
        ({"admin": {"autoscaling": {"targetCPUUtilizationPercentage": 150}}}, "/admin/autoscaling/targetCPU"),
        ({"redirect": {"autoscaling": {"minReplica": 2}}}, "minReplica"),
        ({"nats": {"pdb": {"maxUnavailable": "half"}}}, "/nats/pdb/maxUnavailable"),
        ({"ingest": {"image": {"digest": "latest"}}}, "/ingest/image/digest"),
        ({"timescaledb": {"image": {"tag": ""}}}, "/timescaledb/image/tag"),
        ({"redis": {"podSecurityContext": {"seccompProfile": {"type": "None"}}}}, "/redis/podSecurityContext/seccomp"),
    ],
)
def test_schema_rejects_wrong_values(chart: helm_python.Chart, values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        chart.validate_schema(values)
    with pytest.raises(helm_python.HelmValuesError):
        chart.render(values, name="linkpulse", namespace="links")  # an install refuses them too


def test_schema_accepts_the_defaults_and_nulls(chart: helm_python.Chart) -> None:
    chart.validate_schema({})
    chart.validate_schema(chart.values)
    chart.validate_schema({"config": {"clicks": {"replicas": None}}, "redirect": {"cache": {"ttl": None}}})


def _leaves(values: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(values, dict) and values:
        return [leaf for key, value in values.items() for leaf in _leaves(value, (*path, key))]
    return [path]


def _resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """The node a `$ref` (#/definitions/<name>) points at, else the node itself."""
    while "$ref" in node:
        node = root["definitions"][node["$ref"].removeprefix("#/definitions/")]
    return node


def _schema_at(root: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    schema = _resolve(root, root)
    for key in path:
        if schema.get("type") != "object" or key not in schema.get("properties", {}):
            return None
        schema = _resolve(root, schema["properties"][key])
    return schema


def test_schema_types_every_value_and_closes_every_values_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    untyped = [".".join(p) for p in _leaves(values) if not (s := _schema_at(schema, p)) or not s.get("type")]
    assert untyped == []
    # Every chart-defined object (not free-form Kubernetes maps) refuses unknown keys.
    # `global` is shared with an umbrella chart's other subcharts: their keys must pass through.
    free_form = {
        "affinity",
        "podSecurityContext",
        "containerSecurityContext",
        "seccompProfile",
        "capabilities",
        "global",
    }

    def closed(node: dict[str, Any], path: str) -> list[str]:
        node = _resolve(schema, node)  # a shared definition is checked at every place that uses it
        open_ = []
        if node.get("type") == "object" and "properties" in node:
            if node.get("additionalProperties") is not False and path.rsplit(".", 1)[-1] not in free_form:
                open_.append(path)
            for key, child in node["properties"].items():
                open_ += closed(child, f"{path}.{key}")
        return open_

    assert closed(schema, "") == []


def test_every_value_is_commented() -> None:
    """Each value has a `# --` comment right above it, or above the block it is part of (resources, probes...)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, commented) of the enclosing keys
    uncommented = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):(.*)$", line)
        if not match:
            continue
        indent = len(match[1])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        block = []  # the comment lines right above, up to a blank or key line
        for above in reversed(lines[:number]):
            if not above.lstrip().startswith("#"):
                break
            block.append(above.lstrip())
        commented = any(c.startswith("# --") for c in block)  # plain "#" blocks introduce sections
        if match[3].strip() and not commented and not any(c for _, c in stack):
            uncommented.append(f"{number + 1}: {line.strip()}")
        stack.append((indent, commented))
    assert uncommented == []


def test_defaults_install_bundled_dependencies_and_autoscaling(chart: helm_python.Chart) -> None:
    values = chart.values
    assert values["nats"]["enabled"] and values["redis"]["enabled"] and values["timescaledb"]["enabled"]
    assert values["nats"]["replicas"] == 3
    assert all(values[s]["autoscaling"]["enabled"] for s in ("redirect", "ingest", "admin"))
    assert {s: values[s]["image"]["repository"] for s in ("redirect", "ingest", "admin")} == {
        "redirect": "linkpulse-redirect",
        "ingest": "linkpulse-ingest",
        "admin": "linkpulse-admin",
    }
    assert values["image"]["tag"] == "" and chart.metadata["appVersion"] == "0.1.0"
    assert chart.metadata["apiVersion"] == "v2"


def test_chart_readme_documents_install_upgrade_and_uninstall() -> None:
    readme = (CHART / "README.md").read_text()
    for needle in ("helm install", "helm upgrade", "helm uninstall", "externalDatabase.url", "existingSecret"):
        assert needle in readme
    assert Path(CHART / "templates" / "NOTES.txt").exists()
