"""The helm-unittest runner itself: every assertion it implements passes when true and fails when false."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.helm_unittest.runner import Job, UnsupportedError, load_jobs, run_job

FIXTURE = Path(__file__).parent / "fixture"
JOBS = load_jobs(FIXTURE)


@pytest.mark.parametrize("job", JOBS, ids=[job.id for job in JOBS])
def test_fixture_suite_passes(job: Job) -> None:
    run_job(FIXTURE, job)


def job(*asserts: dict[str, Any], **spec: Any) -> Job:
    """A one-job suite on the fixture's deployment (release `rel`), as if read from fixture/tests."""
    suite = {"templates": ["deployment.yaml"], "release": {"name": "rel"}, "tests": []}
    return Job(FIXTURE / "tests" / "adhoc_test.yaml", suite, {"it": "adhoc", "asserts": list(asserts), **spec})


WRONG: list[dict[str, Any]] = [
    {"isKind": {"of": "StatefulSet"}},
    {"isAPIVersion": {"of": "apps/v1beta1"}},
    {"equal": {"path": "metadata.name", "value": "RELEASE-NAME-web"}},
    {"equal": {"path": "spec.replicas", "value": "2"}},  # a string is not the number
    {"equal": {"path": "spec.nothing", "value": None}},
    {"notEqual": {"path": "spec.replicas", "value": 2}},
    {"exists": {"path": "spec.template.spec.containers[1]"}},
    {"notExists": {"path": "spec.template.spec.containers[0].ports"}},
    {"isNullOrEmpty": {"path": "spec.template.spec.containers"}},
    {"isNotNullOrEmpty": {"path": "metadata.annotations"}},
    {"contains": {"path": "spec.template.spec.containers[0].ports", "content": {"containerPort": 443}}},
    {
        "contains": {
            "path": "spec.template.spec.containers[0].ports",
            "content": {"protocol": "TCP"},
            "any": True,
            "count": 1,
        }
    },
    {"notContains": {"path": "spec.template.spec.containers[0].ports", "content": {"containerPort": 80}, "any": True}},
    {"isSubset": {"path": "spec.template.spec.containers[0]", "content": {"name": "web", "tty": True}}},
    {"isNotSubset": {"path": "spec.template.spec.containers[0]", "content": {"name": "web"}}},
    {"isSubset": {"path": "spec", "content": {"template": {}}}},  # helm-unittest compares each key whole
    {"notContains": {"path": "spec.template.spec.volumes", "content": {"name": "tmp"}}},  # an unknown path
    {"matchRegex": {"path": "metadata.name", "pattern": "^web"}},
    {"notMatchRegex": {"path": "metadata.name", "pattern": "web$"}},
    {"lengthEqual": {"path": "spec.template.spec.containers[0].ports", "count": 3}},
    {"equal": {"path": "spec.replicas", "value": 2}, "not": True},
    {"failedTemplate": {}},
    {"hasDocuments": {"count": 2}},
    {"containsDocument": {"kind": "Deployment", "apiVersion": "apps/v1", "name": "other"}},
    {"equal": {"path": "metadata.name", "value": "rel-web"}, "documentIndex": 1},
    {"equal": {"path": "metadata.name", "value": "rel-web"}, "template": "missing.yaml"},
]


@pytest.mark.parametrize("assertion", WRONG, ids=[str(a)[:60] for a in WRONG])
def test_a_false_assertion_fails(assertion: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        run_job(FIXTURE, job(assertion))


def test_a_failure_message_names_the_assertion_and_the_values() -> None:
    with pytest.raises(AssertionError, match=r"assert #1 equal: deployment.yaml\[0\]: spec.replicas is 2, expected 7"):
        run_job(FIXTURE, job({"isKind": {"of": "Deployment"}}, {"equal": {"path": "spec.replicas", "value": 7}}))


def test_failed_template_compares_the_whole_message() -> None:
    with pytest.raises(AssertionError):
        run_job(FIXTURE, job({"failedTemplate": {"errorMessage": "name is"}}, set={"name": ""}))


def test_failed_template_must_select_the_template_that_failed() -> None:
    # helm-unittest attaches the error of deployment.yaml to that template only.
    with pytest.raises(AssertionError, match=r"the error is in deployment\.yaml"):
        run_job(FIXTURE, job({"failedTemplate": {}, "template": "services.yaml"}, set={"name": ""}))
    run_job(FIXTURE, job({"failedTemplate": {"errorMessage": "name is required"}}, set={"name": ""}))
    # A values (schema) error has no template: any selection sees it.
    run_job(FIXTURE, job({"failedTemplate": {}, "template": "services.yaml"}, set={"replicas": "many"}))


@pytest.mark.parametrize(
    ("assertion", "spec"),
    [
        ({"isValidYaml": {}}, {}),  # an assertion type of helm-unittest we do not implement
        ({"equal": {"path": "spec.replicas", "value": 2}, "decodeBase64": True}, {}),
        ({"equal": {"path": "spec.replicas", "value": 2}}, {"capabilities": {"majorVersion": 1}}),
        ({"equal": {"path": "spec.containers[?(@.name == 'web')]", "value": 2}}, {}),
    ],
)
def test_what_the_runner_does_not_implement_fails_loudly(assertion: dict[str, Any], spec: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedError):
        run_job(FIXTURE, job(assertion, **spec))
