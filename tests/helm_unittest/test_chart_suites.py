"""The chart's helm-unittest suites, executed here with Helm's engine (see runner.py), so they stay true."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests.chart.conftest import VALUE_SETS
from tests.helm_unittest.runner import Job, load_jobs, run_job

CHART = Path(__file__).parents[2] / "charts" / "linkpulse"
JOBS = load_jobs(CHART)


def test_the_chart_has_suites() -> None:
    assert len({job.suite_file for job in JOBS}) >= 3, "charts/linkpulse/tests/*_test.yaml"


@pytest.mark.parametrize("job", JOBS, ids=[job.id for job in JOBS])
def test_chart_suite(job: Job) -> None:
    run_job(CHART, job)


def test_suite_values_files_are_the_pytest_value_sets() -> None:
    """charts/linkpulse/tests/values/<set>.yaml render what tests/chart renders as <set>."""
    files = sorted((CHART / "tests" / "values").glob("*.yaml"))
    assert files
    for path in files:
        assert yaml.safe_load(path.read_text()) == VALUE_SETS[path.stem], path.name
