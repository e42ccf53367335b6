"""values.yaml's comments are the one text of each value: values.schema.json and the README table follow them.

scripts/chart_schema.py carries them over; these tests run it on the chart as it is, and on altered copies
of values.yaml to show that it names what it cannot describe.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType
from typing import Any

import pytest
from tests.chart.conftest import CHART

SCRIPT = CHART.parents[1] / "scripts" / "chart_schema.py"
VALUES = (CHART / "values.yaml").read_text()
SCHEMA_TEXT = (CHART / "values.schema.json").read_text()
README = (CHART / "README.md").read_text()


@pytest.fixture(scope="module")
def chart_schema() -> ModuleType:
    """scripts/chart_schema.py, loaded as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("chart_schema", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _generate(chart_schema: ModuleType, values: str = VALUES) -> Any:
    return chart_schema.generate(values, json.loads(SCHEMA_TEXT), README)


def _replace(old: str, new: str, *, count: int = 1) -> str:
    assert VALUES.count(old) == count, old
    return VALUES.replace(old, new)


def test_schema_and_readme_table_are_what_values_yaml_says(chart_schema: ModuleType) -> None:
    result = _generate(chart_schema)
    assert result.problems == []
    assert json.dumps(result.schema, indent=2, ensure_ascii=False) + "\n" == SCHEMA_TEXT, (
        "values.schema.json is behind values.yaml: run python scripts/chart_schema.py"
    )
    assert result.readme == README, "the README values table is behind values.yaml: run python scripts/chart_schema.py"
    assert chart_schema.main(["--check"]) == 0


def test_every_documented_value_has_a_row_in_the_readme_table(chart_schema: ModuleType) -> None:
    table = README.split(chart_schema.TABLE_START)[1].split(chart_schema.TABLE_END)[0]
    keys = [row.split(" | ")[0].removeprefix("| ") for row in table.strip().splitlines()[2:]]
    documented = [e.name for e in chart_schema.read_values(VALUES) if e.doc is not None]
    assert keys == documented
    assert "| redirect.cache.maxEntries | integer or null | `null` | Links kept in process memory" in table
    assert '| ingest.resources | object | `{"requests":{"cpu":"250m"' in table


def test_every_property_and_definition_has_a_description() -> None:
    schema = json.loads(SCHEMA_TEXT)
    missing = []

    def walk(node: Any, pointer: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                if key in ("properties", "definitions"):
                    missing.extend(f"{pointer}/{key}/{n}" for n, sub in child.items() if not sub.get("description"))
                walk(child, f"{pointer}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{pointer}/{index}")

    walk(schema, "#")
    assert missing == []
    described = schema["properties"]["redirect"]["properties"]["cache"]["properties"]["ttl"]["description"]
    assert described.startswith("Seconds a cached link lives")


def test_repeated_shapes_are_definitions_used_through_ref() -> None:
    schema = json.loads(SCHEMA_TEXT)
    props = schema["properties"]

    def ref(*path: str) -> str:
        node = props[path[0]]
        for key in path[1:]:
            node = node["properties"][key]
        return node["$ref"].removeprefix("#/definitions/")

    for service in ("redirect", "ingest", "admin"):
        assert ref(service, "image") == "serviceImage"
        assert ref(service, "autoscaling") == "autoscaling"
        assert ref(service, "pdb") == "podDisruptionBudget"
        assert {ref(service, "probes", p) for p in ("startup", "liveness", "readiness")} == {"probe"}
    for component in ("redirect", "ingest", "admin", "setup", "nats", "redis", "timescaledb"):
        assert ref(component, "resources") == "resources"
    for dependency in ("nats", "redis", "timescaledb"):
        assert ref(dependency, "image") == "dependencyImage"
        assert ref(dependency, "podSecurityContext") == "podSecurityContext"
        assert ref(dependency, "containerSecurityContext") == "containerSecurityContext"
    text = json.dumps(schema)
    unused = [name for name in schema["definitions"] if f'"#/definitions/{name}"' not in text]
    assert unused == []


def test_a_changed_comment_reaches_the_schema_and_the_readme(chart_schema: ModuleType) -> None:
    changed = _replace("# -- Bound on remembered unknown codes", "# -- Most unknown codes remembered per worker")
    result = _generate(chart_schema, changed)
    assert result.problems == []
    cache = result.schema["properties"]["redirect"]["properties"]["cache"]["properties"]
    assert cache["negativeMaxEntries"]["description"] == "Most unknown codes remembered per worker (default 100000)."
    assert "| redirect.cache.negativeMaxEntries | integer or null | `null` | Most unknown codes" in result.readme


def test_a_value_without_a_comment_is_named(chart_schema: ModuleType) -> None:
    result = _generate(chart_schema, _replace("    # -- Seconds a link record lives in Redis (default 86400).\n", ""))
    assert any("config.redis.ttl has no `# --` comment" in p for p in result.problems), result.problems


def test_a_section_without_an_introduction_is_named(chart_schema: ModuleType) -> None:
    result = _generate(chart_schema, _replace("  # The spill folder of the publisher.\n", ""))
    assert any("redirect.spill has no comment block above it" in p for p in result.problems), result.problems


def test_uses_of_a_shared_definition_must_say_the_same(chart_schema: ModuleType) -> None:
    # ingest's autoscaling is the definition redirect's and admin's are: one text for all three.
    ingest = VALUES.index("\ningest:\n")
    at = VALUES.index("    # -- Most pods.\n", ingest)
    changed = f"{VALUES[:at]}    # -- Most ingest pods.\n{VALUES[at + len('    # -- Most pods.') + 1 :]}"
    result = _generate(chart_schema, changed)
    assert any(
        "ingest.autoscaling.maxReplicas and redirect.autoscaling.maxReplicas" in p
        and "#/definitions/autoscaling/properties/maxReplicas" in p
        for p in result.problems
    ), result.problems


def test_a_value_the_schema_does_not_know_is_named(chart_schema: ModuleType) -> None:
    result = _generate(chart_schema, _replace("tmpSizeLimit: 64Mi\n", "tmpSizeLimit: 64Mi\n# -- New.\ntmpSize: 1\n"))
    assert any("tmpSize is not in values.schema.json" in p for p in result.problems), result.problems
