"""The chart's `helm test` script (charts/linkpulse/files/helm-test.py) against a real stack from `linkpulse up`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from tests.e2e.test_stack import stack, stack_dir, stack_env  # noqa: F401  (this module's `linkpulse up`)

SCRIPT = Path(__file__).resolve().parents[2] / "charts" / "linkpulse" / "files" / "helm-test.py"


def run_script(stack: dict[str, Any], key: str) -> subprocess.CompletedProcess[str]:  # noqa: F811
    """The script as the test pod runs it: `python -c <script>` with only its own variables set."""
    env = {
        "PATH": os.environ["PATH"],
        "ADMIN_URL": stack["admin_url"],
        "REDIRECT_URL": stack["redirect_url"],
        "ADMIN_KEY": key,
        "TIMEOUT_SECONDS": "30",
    }
    return subprocess.run(
        [sys.executable, "-I", "-c", SCRIPT.read_text()], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_helm_test_creates_follows_and_deletes_a_link(stack: dict[str, Any]) -> None:  # noqa: F811
    result = run_script(stack, stack["admin_key"])
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "create the link",
        "the redirect answers 302 with the link's target",
        "delete the link",
        "the deleted link answers 410",
    ]
    code = lines[1].split("HEAD /", 1)[1].split(" ", 1)[0]
    assert code.startswith("helm-test-")
    # The link it made is gone from the API (the code stays taken, so each run makes a fresh one).
    response = httpx.get(
        f"{stack['admin_url']}/api/v1/links/{code}", headers={"Authorization": f"Bearer {stack['admin_key']}"}
    )
    assert response.status_code == 404, response.text


def test_the_helm_test_fails_at_once_with_a_wrong_key(stack: dict[str, Any]) -> None:  # noqa: F811
    result = run_script(stack, "lp_NotTheBootstrapKey0123456789abcdefghijklmnop")
    assert result.returncode == 1
    assert "FAILED: the admin API refused the bootstrap key (401)" in result.stderr
