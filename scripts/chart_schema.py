"""Carry the comments of charts/linkpulse/values.yaml into values.schema.json and the chart README's values table.

values.yaml documents each value the helm-docs way: a `# --` comment right above its key, continued by the
comment lines below it. A key holding other keys is described by the plain comment block right above it
(the section's introduction). This script writes those texts as the `description` of the matching schema
properties, following `$ref`: a property of a shared definition takes the one text all its uses agree on.
It also rewrites the table between the markers of charts/linkpulse/README.md, one row per `# --` value.

values.schema.json stays the source of the types and constraints, and of the descriptions values.yaml
cannot give (inside resources, probes and security contexts, keys it leaves out, the definitions):
those are written by hand there and kept.

    python scripts/chart_schema.py           # rewrite values.schema.json and the README table
    python scripts/chart_schema.py --check   # exit 1, naming what is out of date or undescribed
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CHART", "Entry", "Generated", "generate", "main", "read_values"]

CHART = Path(__file__).resolve().parents[1] / "charts" / "linkpulse"
TABLE_START = "<!-- values-table:start -->"
TABLE_END = "<!-- values-table:end -->"
_KEY = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_-]*):(\s|$)")
_DEFINITIONS = "#/definitions/"


@dataclass(frozen=True)
class Entry:
    """One key of values.yaml: its path, its `# --` text (doc) or section introduction (intro), its default."""

    path: tuple[str, ...]
    line: int
    doc: str | None
    intro: str | None
    value: Any

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def is_section(self) -> bool:
        """A key holding other keys (described by its introduction); everything else is a value."""
        return isinstance(self.value, dict) and bool(self.value)


@dataclass(frozen=True)
class Generated:
    """What values.yaml makes of the schema and the README, and what keeps them from being complete."""

    schema: dict[str, Any]
    readme: str
    problems: list[str]


def _text(lines: list[str]) -> str:
    """Comment lines as one text: lines joined by spaces, an empty `#` line starting a new paragraph."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        body = line.lstrip()[1:].strip()
        if body:
            paragraphs[-1].append(body)
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n".join(" ".join(p) for p in paragraphs if p)


def read_values(text: str) -> list[Entry]:
    """Every key of a values.yaml, in file order, with the comment block right above it."""
    values = yaml.safe_load(text) or {}
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []
    entries = []
    for number, line in enumerate(lines):
        match = _KEY.match(line)
        if not match:
            continue
        indent = len(match[1])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match[2]))
        block: list[str] = []  # the comment lines right above, up to a blank or key line
        for above in reversed(lines[:number]):
            if not above.lstrip().startswith("#"):
                break
            block.insert(0, above)
        starts = [i for i, c in enumerate(block) if c.lstrip().startswith("# --")]
        doc = _text([block[starts[-1]].replace("# --", "#", 1), *block[starts[-1] + 1 :]]) if starts else None
        path = tuple(key for _, key in stack)
        value: Any = values
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        entries.append(Entry(path, number + 1, doc, None if starts else (_text(block) or None), value))
    return entries


def _yaml_paths(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(value, dict):
        return []
    return [p for key, child in value.items() for p in [(*path, str(key)), *_yaml_paths(child, (*path, str(key)))]]


def _resolve(schema: dict[str, Any], node: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
    while "$ref" in node:
        pointer = node["$ref"]
        node = schema["definitions"][pointer.removeprefix(_DEFINITIONS)]
    return node, pointer


def _find(schema: dict[str, Any], path: tuple[str, ...]) -> tuple[dict[str, Any], str] | None:
    """The schema property of a values path and its JSON pointer (inside a definition when reached by $ref)."""
    node, pointer = schema, "#"
    for key in path:
        node, pointer = _resolve(schema, node, pointer)
        if key not in node.get("properties", {}):
            return None
        node, pointer = node["properties"][key], f"{pointer}/properties/{key}"
    return node, pointer


def _describe(schema: dict[str, Any], entries: list[Entry]) -> list[str]:
    """Set the descriptions values.yaml gives; the problems: unknown keys, missing or disagreeing texts."""
    problems = []
    given: dict[str, tuple[Entry, str]] = {}
    documented: list[tuple[str, ...]] = []  # values whose inside the schema describes (resources, probes...)
    for entry in entries:
        inside = any(entry.path[: len(d)] == d for d in documented)
        if entry.doc is not None:
            documented.append(entry.path)
        text = entry.doc if entry.doc is not None else (entry.intro if entry.is_section else None)
        found = _find(schema, entry.path)
        if found is None:
            problems.append(f"values.yaml:{entry.line}: {entry.name} is not in values.schema.json")
            continue
        node, pointer = found
        if text is None:
            if not inside:
                kind = "comment block above it" if entry.is_section else "`# --` comment"
                problems.append(f"values.yaml:{entry.line}: {entry.name} has no {kind}")
            continue
        if pointer in given and given[pointer][1] != text:
            first = given[pointer][0]
            problems.append(
                f"values.yaml:{entry.line}: {entry.name} and {first.name} (line {first.line}) share {pointer} "
                "but are described differently; give them one text"
            )
            continue
        given[pointer] = (entry, text)
        node["description"] = text
    return problems


def _undescribed(node: Any, pointer: str) -> list[str]:
    """JSON pointers of the properties and definitions without a description."""
    missing = []
    if isinstance(node, dict):
        for key, child in node.items():
            where = f"{pointer}/{key}"
            if key in ("properties", "definitions") and isinstance(child, dict):
                missing += [f"{where}/{name}" for name, sub in child.items() if not sub.get("description")]
            missing += _undescribed(child, where)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            missing += _undescribed(child, f"{pointer}/{index}")
    return missing


def _ordered(node: Any) -> Any:
    """The same schema with `description` first in every object, so hand edits and the script agree."""
    if isinstance(node, dict):
        text = node.get("description")
        first = {"description": text} if isinstance(text, str) else {}  # not a property named "description"
        return {**first, **{k: _ordered(v) for k, v in node.items() if not (k == "description" and first)}}
    if isinstance(node, list):
        return [_ordered(v) for v in node]
    return node


def _type(schema: dict[str, Any], node: dict[str, Any]) -> str:
    node, _ = _resolve(schema, node, "")
    types = node.get("type") or [branch.get("type", "any") for branch in node.get("oneOf", [])]
    return " or ".join([types] if isinstance(types, str) else types) or "any"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def _table(schema: dict[str, Any], entries: list[Entry]) -> str:
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for entry in entries:
        found = _find(schema, entry.path)
        if entry.doc is None or found is None:
            continue
        default = json.dumps(entry.value, ensure_ascii=False, separators=(",", ":"))
        rows.append(f"| {entry.name} | {_type(schema, found[0])} | `{_cell(default)}` | {_cell(entry.doc)} |")
    return "\n".join(rows)


def generate(values_text: str, schema: dict[str, Any], readme: str) -> Generated:
    """values.schema.json and README.md as values.yaml describes them (the inputs are not changed)."""
    schema = json.loads(json.dumps(schema))
    entries = read_values(values_text)
    problems = []
    parsed = {e.path for e in entries}
    for path in _yaml_paths(yaml.safe_load(values_text) or {}):
        if path not in parsed:
            problems.append(f"values.yaml: {'.'.join(path)} is a key this script could not read; write it plainly")
    problems += _describe(schema, entries)
    problems += [f"values.schema.json: {p} has no description" for p in _undescribed(schema, "#")]
    head, start, rest = readme.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not (start and end):
        problems.append(f"README.md: no {TABLE_START} ... {TABLE_END} markers for the values table")
    else:
        readme = f"{head}{start}\n{_table(schema, entries)}\n{end}{tail}"
    return Generated(_ordered(schema), readme, problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a file is out of date")
    parser.add_argument("--chart", type=Path, default=CHART, help="the chart folder (default: charts/linkpulse)")
    args = parser.parse_args(argv)
    files = {name: args.chart / name for name in ("values.yaml", "values.schema.json", "README.md")}
    schema = json.loads(files["values.schema.json"].read_text())
    result = generate(files["values.yaml"].read_text(), schema, files["README.md"].read_text())
    outputs = {
        files["values.schema.json"]: json.dumps(result.schema, indent=2, ensure_ascii=False) + "\n",
        files["README.md"]: result.readme,
    }
    stale = [path for path, text in outputs.items() if path.read_text() != text]
    for problem in result.problems:
        print(problem, file=sys.stderr)
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run python scripts/chart_schema.py", file=sys.stderr)
        return 1 if stale or result.problems else 0
    for path in stale:
        path.write_text(outputs[path])
        print(f"wrote {path}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
