"""Runs helm-unittest suites (`charts/*/tests/*_test.yaml`) on Helm's own engine through helm-python-sdk.

People with helm run the suites with the helm-unittest plugin; machines without helm (CI here) run them
with this runner, so the suites are executed on every test run and cannot rot. It implements the part of
helm-unittest's format (its DOCUMENT.md) that our suites use, with the same meaning; anything else in a
suite (an unknown assertion type or option) fails the test instead of being silently ignored.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

__all__ = ["Job", "UnsupportedError", "load_jobs", "run_job"]

DEFAULT_RELEASE = {"name": "RELEASE-NAME", "namespace": "NAMESPACE", "revision": 0, "upgrade": False}
SUITE_KEYS = {"suite", "templates", "values", "set", "release", "tests"}
JOB_KEYS = {"it", "values", "set", "template", "templates", "documentIndex", "documentSelector", "release", "asserts"}
ASSERT_OPTIONS = {"not", "template", "documentIndex", "documentSelector"}
_MISSING = object()
_DOC_SPLIT = re.compile(r"^---\s*$", re.MULTILINE)
_PATH_TOKEN = re.compile(r"""\.?([^.\[\]]+)|\[(\d+)\]|\[["']([^"']+)["']\]""")


class UnsupportedError(Exception):
    """The suite uses a part of helm-unittest this runner does not implement."""


@dataclass(frozen=True)
class Job:
    """One test job of a suite, with the suite it belongs to."""

    suite_file: Path
    suite: dict[str, Any]
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.suite_file.stem}::{self.spec.get('it', '?')}"


def load_jobs(chart_dir: Path) -> list[Job]:
    """Every test job of every `tests/*_test.yaml` suite of the chart."""
    jobs = []
    for path in sorted((chart_dir / "tests").glob("*_test.yaml")):
        suite = yaml.safe_load(path.read_text())
        _only(suite, SUITE_KEYS, f"suite {path.name}")
        jobs.extend(Job(path, suite, spec) for spec in suite["tests"])
    return jobs


def run_job(chart_dir: Path, job: Job) -> None:
    """Render the chart as the job says and check each assertion; raise AssertionError naming the failures."""
    _only(job.spec, JOB_KEYS, f"job {job.id!r}")
    values = _values(job)
    release = {**DEFAULT_RELEASE, **(job.suite.get("release") or {}), **(job.spec.get("release") or {})}
    chart = helm_python.Chart.load(chart_dir)
    rendered: dict[str, list[Any]] | None = None
    error: str | None = None
    try:
        manifests = chart.render(
            values,
            name=release["name"],
            namespace=release["namespace"],
            revision=release["revision"],
            is_install=not release["upgrade"],
            is_upgrade=bool(release["upgrade"]),
        )
        rendered = {_template_name(path): _parse(path, text) for path, text in manifests.items()}
    except helm_python.HelmError as exc:
        error = str(exc)
    finally:
        chart.close()

    failures = []
    for index, assertion in enumerate(job.spec["asserts"]):
        try:
            _check(assertion, job, rendered, error)
        except AssertionError as exc:
            failures.append(f"assert #{index} {_kind(assertion)}: {exc}")
    if failures:
        raise AssertionError(f"{job.id}:\n  " + "\n  ".join(failures))


def _values(job: Job) -> dict[str, Any]:
    # Later sources win, as in helm-unittest: suite files, suite set, job files, job set.
    merged: dict[str, Any] = {}
    for source in (job.suite, job.spec):
        for name in source.get("values") or []:
            _deep_merge(merged, yaml.safe_load((job.suite_file.parent / name).read_text()) or {})
        for key, value in (source.get("set") or {}).items():
            _set_path(merged, key, copy.deepcopy(value))
    return merged


def _deep_merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _set_path(values: dict[str, Any], key: str, value: Any) -> None:
    # `--set` keys: dots separate levels, `\.` is a literal dot (for annotation names).
    parts = [p.replace("\0", ".") for p in key.replace("\\.", "\0").split(".")]
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _template_name(path: str) -> str:
    # Helm names rendered files `<chart>/templates/<file>`; suites say `<file>` or `templates/<file>`.
    return path.split("/templates/", 1)[1]


def _parse(path: str, text: str) -> list[Any]:
    # As helm-unittest: a .txt template (NOTES.txt) is one raw document, not YAML.
    return [{"raw": text}] if path.endswith(".txt") else _documents(text)


def _documents(text: str) -> list[Any]:
    return [doc for part in _DOC_SPLIT.split(text) if (doc := yaml.safe_load(part)) is not None]


def _kind(assertion: dict[str, Any]) -> str:
    kinds = set(assertion) - ASSERT_OPTIONS
    if len(kinds) != 1:
        raise UnsupportedError(f"an assertion needs exactly one type, got {sorted(kinds)}")
    return kinds.pop()


def _check(assertion: dict[str, Any], job: Job, rendered: dict[str, list[Any]] | None, error: str | None) -> None:
    kind = _kind(assertion)
    params = assertion[kind] or {}
    negate = bool(assertion.get("not", False))
    if kind in ("failedTemplate", "notFailedTemplate"):
        holds = _failed_template(params, error) if kind == "failedTemplate" else error is None
        if holds == negate:
            raise AssertionError(f"does not hold{' (negated)' if negate else ''}; rendering error: {error or 'none'}")
        if kind == "failedTemplate" and not negate and error is not None:
            _check_failed_template_is_selected(assertion, job, error)
        return
    if rendered is None:
        raise AssertionError(f"rendering failed: {error}")
    templates = _selected_templates(assertion, job, rendered)
    check = _ASSERTIONS.get(kind)
    if check is None:
        raise UnsupportedError(f"assertion type {kind!r} is not implemented by this runner")
    if kind in ("hasDocuments", "containsDocument"):
        for template in templates:
            ok, why = check(rendered[template], params)
            if ok == negate:
                raise AssertionError(f"{template}: {why}" + (" (negated)" if negate else ""))
        return
    for template in templates:
        docs = _select_documents(rendered[template], assertion, job, template)
        if not docs:
            raise AssertionError(f"{template}: no document to assert on")
        for index, doc in docs:
            ok, why = check(doc, params)
            if ok == negate:
                raise AssertionError(f"{template}[{index}]: {why}" + (" (negated)" if negate else ""))


def _failed_template(params: dict[str, Any], error: str | None) -> bool:
    if error is None:
        return False
    if "errorMessage" in params:
        # helm-unittest compares the human-readable part: what follows "execution error at (...): ".
        message = error.split("): ", 1)[1] if error.startswith("execution error at (") else error
        return bool(message.strip() == str(params["errorMessage"]).strip())
    if "errorPattern" in params:
        return re.search(str(params["errorPattern"]), error) is not None
    return True


def _check_failed_template_is_selected(assertion: dict[str, Any], job: Job, error: str) -> None:
    """helm-unittest attaches an error of a template file to that file only (one of a partial, `_*.tpl`,
    and a values error to every template asserted on): the assertion must select the file that failed,
    and the suite's `templates`, when given, must hold it (helm-unittest may render only those)."""
    match = re.match(r"execution error at \((?:[^/()]+/)?templates/([^:()]+):\d+:\d+\)", error)
    if match is None or match[1].rsplit("/", 1)[-1].startswith("_"):
        return
    failed = match[1]
    selected = (
        [assertion["template"]]
        if "template" in assertion
        else [job.spec["template"]]
        if "template" in job.spec
        else job.spec.get("templates") or job.suite.get("templates") or []
    )
    elsewhere = [t for t in selected if not fnmatch.fnmatch(failed, t.removeprefix("templates/"))]
    if elsewhere:
        raise AssertionError(f"the error is in {failed}, helm-unittest would not find it in {elsewhere}")
    suite = job.suite.get("templates") or []
    if suite and not any(fnmatch.fnmatch(failed, t.removeprefix("templates/")) for t in suite):
        raise AssertionError(f"the error is in {failed}, which is not among the suite's templates {suite}")


def _selected_templates(assertion: dict[str, Any], job: Job, rendered: dict[str, list[Any]]) -> list[str]:
    patterns = (
        [assertion["template"]]
        if "template" in assertion
        else [job.spec["template"]]
        if "template" in job.spec
        else job.spec.get("templates") or job.suite.get("templates")
    )
    if not patterns:
        raise UnsupportedError("no template named in the assertion, the job or the suite")
    names = []
    for pattern in patterns:
        pattern = pattern.removeprefix("templates/")
        matched = sorted(name for name in rendered if fnmatch.fnmatch(name, pattern))
        if not matched:
            raise AssertionError(f"template {pattern!r} rendered nothing (templates: {sorted(rendered)})")
        names.extend(matched)
    return names


def _select_documents(docs: list[Any], assertion: dict[str, Any], job: Job, template: str) -> list[tuple[int, Any]]:
    index = assertion.get("documentIndex", job.spec.get("documentIndex", -1))
    selector = assertion.get("documentSelector", job.spec.get("documentSelector"))
    if selector is not None:
        _only(selector, {"path", "value"}, "documentSelector")
        chosen = [(i, d) for i, d in enumerate(docs) if _get(d, selector["path"]) == selector["value"]]
        if not chosen:
            raise AssertionError(f"{template}: no document where {selector['path']} == {selector['value']!r}")
        return chosen
    if index >= 0:
        if index >= len(docs):
            raise AssertionError(f"{template}: documentIndex {index} but only {len(docs)} documents")
        return [(index, docs[index])]
    return list(enumerate(docs))


def _get(doc: Any, path: str) -> Any:
    node = doc
    for name, number, quoted in list(_tokens(path)):  # all of it first: bad syntax fails even if absent
        key: str | int = int(number) if number else (quoted or name)
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                return _MISSING
        elif not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _tokens(path: str) -> Iterator[tuple[str, str, str]]:
    position = 0
    while position < len(path):
        match = _PATH_TOKEN.match(path, position)
        if match is None:
            raise UnsupportedError(f"path syntax not implemented: {path!r} at {position}")
        yield match.group(1) or "", match.group(2) or "", match.group(3) or ""
        position = match.end()


def _subset(content: Any, value: Any) -> bool:
    """True when every key of `content` is in `value` with an equal value: helm-unittest (validateSubset)
    compares each top-level key whole, so a nested mapping must match completely, not as a subset."""
    if isinstance(content, dict):
        return isinstance(value, dict) and all(k in value and value[k] == v for k, v in content.items())
    return bool(content == value)


def _path_value(doc: Any, params: dict[str, Any]) -> Any:
    value = _get(doc, params["path"])
    if value is _MISSING:
        raise AssertionError(f"path {params['path']!r} does not exist")
    return value


def _equal(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    value = _path_value(doc, p)
    return value == p["value"], f"{p['path']} is {value!r}, expected {p['value']!r}"


def _not_equal(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    value = _path_value(doc, p)
    return value != p["value"], f"{p['path']} is {value!r}, expected anything else"


def _exists(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    return _get(doc, p["path"]) is not _MISSING, f"{p['path']} does not exist"


def _not_exists(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    return _get(doc, p["path"]) is _MISSING, f"{p['path']} exists: {_get(doc, p['path'])!r}"


def _empty(value: Any) -> bool:
    return value is _MISSING or value in (None, "", 0, [], {})


def _null_or_empty(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    value = _get(doc, p["path"])
    return _empty(value), f"{p['path']} is {value!r}, expected null or empty"


def _not_null_or_empty(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    value = _get(doc, p["path"])
    return not _empty(value), f"{p['path']} is null or empty"


def _matches(item: Any, p: dict[str, Any]) -> bool:
    return _subset(p["content"], item) if p.get("any") else bool(item == p["content"])


def _contains(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    value = _path_value(doc, p)
    if not isinstance(value, list):
        raise AssertionError(f"{p['path']} is not an array: {value!r}")
    found = sum(1 for item in value if _matches(item, p))
    ok = found == p["count"] if "count" in p else found > 0
    return ok, f"{p['path']} holds {p['content']!r} {found} times: {value!r}"


def _not_contains(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    value = _path_value(doc, p)  # helm-unittest fails notContains, as contains, on an unknown path
    if not isinstance(value, list):
        raise AssertionError(f"{p['path']} is not an array: {value!r}")
    found = [item for item in value if _matches(item, p)]
    return not found, f"{p['path']} holds {found!r}"


def _is_subset(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    value = _path_value(doc, p)
    return _subset(p["content"], value), f"{p['path']} = {value!r} does not hold {p['content']!r}"


def _is_not_subset(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    ok, _ = _is_subset(doc, p)
    return not ok, f"{p['path']} holds {p['content']!r}"


def _match_regex(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    value = _path_value(doc, p)
    if not isinstance(value, str):
        raise AssertionError(f"{p['path']} is not a string: {value!r}")
    return re.search(p["pattern"], value) is not None, f"{p['path']} = {value!r} does not match {p['pattern']!r}"


def _not_match_regex(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    ok, _ = _match_regex(doc, p)
    return not ok, f"{p['path']} matches {p['pattern']!r}"


def _is_kind(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    return doc.get("kind") == p["of"], f"kind is {doc.get('kind')!r}, expected {p['of']!r}"


def _is_api_version(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    return doc.get("apiVersion") == p["of"], f"apiVersion is {doc.get('apiVersion')!r}, expected {p['of']!r}"


def _length_equal(doc: Any, p: dict[str, Any]) -> tuple[bool, str]:
    value = _path_value(doc, p)
    return len(value) == p["count"], f"{p['path']} has {len(value)} items, expected {p['count']}"


def _has_documents(docs: list[Any], p: dict[str, Any]) -> tuple[bool, str]:
    return len(docs) == p["count"], f"{len(docs)} documents, expected {p['count']}"


def _contains_document(docs: list[Any], p: dict[str, Any]) -> tuple[bool, str]:
    _only(p, {"kind", "apiVersion", "name", "namespace"}, "containsDocument")
    wanted = {"kind": p["kind"], "apiVersion": p["apiVersion"]}
    meta = {k: p[k] for k in ("name", "namespace") if k in p}
    ok = any(_subset(wanted, d) and _subset(meta, d.get("metadata") or {}) for d in docs)
    return ok, f"no document {p!r}"


_ASSERTIONS: dict[str, Callable[[Any, dict[str, Any]], tuple[bool, str]]] = {
    "equal": _equal,
    "notEqual": _not_equal,
    "exists": _exists,
    "notExists": _not_exists,
    "isNullOrEmpty": _null_or_empty,
    "isNotNullOrEmpty": _not_null_or_empty,
    "contains": _contains,
    "notContains": _not_contains,
    "isSubset": _is_subset,
    "isNotSubset": _is_not_subset,
    "matchRegex": _match_regex,
    "notMatchRegex": _not_match_regex,
    "isKind": _is_kind,
    "isAPIVersion": _is_api_version,
    "lengthEqual": _length_equal,
    "hasDocuments": _has_documents,
    "containsDocument": _contains_document,
}


def _only(mapping: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(mapping) - allowed
    if unknown:
        raise UnsupportedError(f"{where}: {sorted(unknown)} not implemented by this runner")
