"""scripts/audit.py: pip-audit over the lock fails on a known advisory and never passes a release it could not audit.

Two sources. PyPI's JSON API (pip-audit's default) is the real one: it audits requirements/lock.txt, and a
known-vulnerable pin must fail it; where PyPI does not answer per release, those tests are skipped, naming why.
A stand-in of the OSV query API on 127.0.0.1, answering from a real advisory record (tests/data/osv), drives
the same script end to end on every machine: a finding fails, silence passes, an unreachable service is
"not audited"."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.images.lockfile import REQUIREMENTS, ROOT, entries

AUDIT = ROOT / "scripts" / "audit.py"
ADVISORIES = [json.loads(p.read_text()) for p in sorted((ROOT / "tests" / "data" / "osv").glob("*.json"))]
CLEAN, VULNERABLE, NOT_AUDITED = 0, 1, 2

# Jinja2 2.11.0: PYSEC-2021-66 (CVE-2020-28493, ReDoS in urlize), fixed in 2.11.3. The hash is its wheel's.
JINJA2_2_11_0 = "jinja2==2.11.0 --hash=sha256:6e7a3c2934694d59ad334c93dd1b6c96699cf24c53fdb8ec848ac6b23e685734\n"
# A release from the real lock, as the lock writes it: one the advisory records do not name.
MSGSPEC_LOCKED = next(
    f"msgspec=={e.version} " + " ".join(f"--hash=sha256:{h}" for h in sorted(e.hashes))
    for e in entries(REQUIREMENTS / "lock.txt")
    if e.name == "msgspec"
)


def audit(lock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(AUDIT), str(lock), *args], capture_output=True, text=True, timeout=240, check=False
    )


def write_lock(tmp_path: Path, *entries: str) -> Path:
    lock = tmp_path / "lock.txt"
    lock.write_text("".join(e if e.endswith("\n") else e + "\n" for e in entries))
    return lock


def skip_unless_audited(done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode == NOT_AUDITED:
        pytest.skip(f"vulnerability audit NOT run against PyPI from here: {done.stderr.strip().splitlines()[0]}")


def test_locked_set_has_no_known_advisory_on_pypi() -> None:
    done = audit(REQUIREMENTS / "lock.txt")
    assert done.returncode != VULNERABLE, done.stderr
    skip_unless_audited(done)
    assert done.returncode == CLEAN, done.stderr
    assert "no known advisory" in done.stdout


def test_a_known_vulnerable_pin_fails_the_audit_on_pypi(tmp_path: Path) -> None:
    done = audit(write_lock(tmp_path, JINJA2_2_11_0))
    skip_unless_audited(done)
    assert done.returncode == VULNERABLE
    assert "jinja2==2.11.0" in done.stderr and "CVE-2020-28493" in done.stderr


class OsvStandIn(BaseHTTPRequestHandler):
    """POST /v1/query as OSV's public API answers it, from the records in ADVISORIES; `status` forces an error."""

    status = 200

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.status != 200:
            self.send_error(self.status)
            return
        package, version = query["package"], query["version"]
        vulns = [
            record
            for record in ADVISORIES
            for affected in record["affected"]
            if affected["package"]["name"] == package["name"] and version in affected.get("versions", [])
        ]
        body = json.dumps({"vulns": vulns} if vulns else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def osv_url() -> Iterator[str]:
    """An OSV query API on 127.0.0.1 that knows the advisories of tests/data/osv."""
    yield from serve(OsvStandIn)


def test_an_advisory_the_service_reports_fails_the_audit(tmp_path: Path, osv_url: str) -> None:
    done = audit(write_lock(tmp_path, MSGSPEC_LOCKED, JINJA2_2_11_0), "--service", "osv", "--osv-url", osv_url)
    assert done.returncode == VULNERABLE, (done.stdout, done.stderr)
    assert "jinja2==2.11.0: PYSEC-2021-66" in done.stderr and "fixed in 2.11.3" in done.stderr
    assert "msgspec" not in done.stderr


def test_a_locked_set_the_service_knows_nothing_against_passes(tmp_path: Path, osv_url: str) -> None:
    done = audit(write_lock(tmp_path, MSGSPEC_LOCKED), "--service", "osv", "--osv-url", osv_url)
    assert done.returncode == CLEAN, (done.stdout, done.stderr)
    assert "1 locked releases audited against the osv service: no known advisory" in done.stdout


def test_a_service_that_errors_is_not_audited_rather_than_clean(tmp_path: Path) -> None:
    failing = type("Failing", (OsvStandIn,), {"status": 503})
    lock = write_lock(tmp_path, MSGSPEC_LOCKED, JINJA2_2_11_0)
    for url in serve(failing):
        done = audit(lock, "--service", "osv", "--osv-url", url)
    assert done.returncode == NOT_AUDITED, (done.stdout, done.stderr)
    assert done.stderr.startswith("NOT AUDITED")


def test_a_service_that_cannot_be_reached_is_not_audited_rather_than_clean(tmp_path: Path) -> None:
    for url in serve(OsvStandIn):
        closed = url  # the port is free again once the server is closed
    done = audit(write_lock(tmp_path, JINJA2_2_11_0), "--service", "osv", "--osv-url", closed)
    assert done.returncode == NOT_AUDITED, (done.stdout, done.stderr)
    assert done.stderr.startswith("NOT AUDITED: pip-audit could not query the osv service")
