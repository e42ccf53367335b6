"""`helm test`: create a link through the admin API, follow it on the redirect Service, then delete it.

Run by the chart's test pod (templates/tests/test-redirect.yaml) with the admin image's Python and only
its standard library; tests/e2e/test_helm_test_script.py runs it against `linkpulse up`. Environment:
ADMIN_URL, REDIRECT_URL, ADMIN_KEY (the bootstrap key), TIMEOUT_SECONDS (retries while pods start).
Exit status 0 when the redirect answered as expected, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

TARGET = "https://example.com/linkpulse-helm-test"


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    """Report a 30x instead of following it: the test checks the redirect itself."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_KeepRedirects)


def call(method: str, url: str, key: str = "", body: object = None) -> tuple[int, Mapping[str, str], bytes]:
    """One HTTP request: (status, headers, body); HTTP error statuses are returned, not raised."""
    headers = {"Accept": "application/json"}
    data = None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def until(deadline: float, what: str, attempt: Callable[[], tuple[bool, str]]) -> str:
    """Run attempt() until it reports success or the deadline passes (pods may still be starting)."""
    while True:
        try:
            done, detail = attempt()
        except OSError as exc:  # refused, reset, timed out: the Service has no ready pod yet
            done, detail = False, repr(exc)
        if done:
            print(f"ok: {what}: {detail}", flush=True)
            return detail
        if time.monotonic() > deadline:
            raise SystemExit(f"FAILED: {what}: {detail}")
        time.sleep(2)


def main(environ: Mapping[str, str]) -> int:
    admin = environ["ADMIN_URL"].rstrip("/")
    redirect = environ["REDIRECT_URL"].rstrip("/")
    key = environ["ADMIN_KEY"]
    deadline = time.monotonic() + float(environ.get("TIMEOUT_SECONDS", "120"))
    code = f"helm-test-{secrets.token_hex(6)}"  # fresh each run: a deleted code stays taken

    def create() -> tuple[bool, str]:
        status, _, body = call("POST", f"{admin}/api/v1/links", key, {"url": TARGET, "code": code})
        if status in (401, 403):
            raise SystemExit(f"FAILED: the admin API refused the bootstrap key ({status})")
        return status == 201, f"POST /api/v1/links -> {status} {body[:200]!r}"

    def follow() -> tuple[bool, str]:
        # HEAD redirects like GET but records no click: the test leaves no click behind.
        status, headers, _ = call("HEAD", f"{redirect}/{code}")
        location = headers.get("Location")
        return status == 302 and location == TARGET, f"HEAD /{code} -> {status} Location: {location}"

    def delete() -> tuple[bool, str]:
        status, _, body = call("DELETE", f"{admin}/api/v1/links/{code}", key)
        return status == 204, f"DELETE /api/v1/links/{code} -> {status} {body[:200]!r}"

    def gone() -> tuple[bool, str]:
        status, _, _ = call("HEAD", f"{redirect}/{code}")
        return status == 410, f"HEAD /{code} after delete -> {status}"

    until(deadline, "create the link", create)
    try:
        until(deadline, "the redirect answers 302 with the link's target", follow)
    finally:
        until(deadline, "delete the link", delete)
    until(deadline, "the deleted link answers 410", gone)
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
