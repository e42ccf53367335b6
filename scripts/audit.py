"""Audit a hashed lock with pip-audit: exit 1 on a known advisory, 2 when some release could not be audited."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CLEAN, VULNERABLE, NOT_AUDITED = 0, 1, 2


def run_pip_audit(lock: Path, service: str, osv_url: str | None) -> tuple[dict | None, str]:
    """pip-audit's JSON report of the lock (None when it ended without one) and what it wrote to stderr."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        command = [sys.executable, "-m", "pip_audit", "--requirement", str(lock)]
        # The lock is fully pinned and hashed: pip-audit reads it as it is, resolving and installing nothing.
        command += ["--disable-pip", "--vulnerability-service", service, "--progress-spinner", "off"]
        command += ["--format", "json", "--output", str(report)]
        command += ["--osv-url", osv_url] if osv_url else []
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        # pip-audit exits 1 both on a finding and on a crash (an unreachable service raises); only a written
        # report tells the two apart.
        text = report.read_text() if report.exists() else ""
        return (json.loads(text) if text.strip() else None), done.stderr


def judge(report: dict | None, stderr: str, service: str) -> tuple[int, list[str]]:
    """The exit status and the lines to print for one pip-audit report."""
    if report is None:
        tail = [line for line in stderr.strip().splitlines() if line.strip()][-3:]
        return NOT_AUDITED, [f"NOT AUDITED: pip-audit could not query the {service} service", *tail]
    dependencies = report["dependencies"]
    skipped = [d for d in dependencies if "skip_reason" in d]
    found = [(d, v) for d in dependencies for v in d.get("vulns", [])]
    lines = [
        f"{d['name']}=={d['version']}: {v['id']} ({', '.join(v.get('aliases', [])) or 'no alias'}), "
        f"fixed in {', '.join(v.get('fix_versions', [])) or 'no release yet'}"
        for d, v in found
    ]
    if skipped:
        lines.append(
            f"NOT AUDITED: {len(skipped)} of {len(dependencies)} locked releases got no answer from the {service} "
            f"service, e.g. {skipped[0]['skip_reason']}"
        )
    if found:
        return VULNERABLE, [f"{len(found)} known advisories in the locked set:", *lines]
    if skipped:
        return NOT_AUDITED, lines
    return CLEAN, [f"{len(dependencies)} locked releases audited against the {service} service: no known advisory"]


def main(argv: list[str] | None = None) -> int:
    """Audit the lock and print the verdict; the exit status is CLEAN, VULNERABLE or NOT_AUDITED."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("lock", nargs="?", type=Path, default=ROOT / "requirements" / "lock.txt")
    parser.add_argument(
        "--service", choices=("pypi", "osv"), default="pypi", help="where pip-audit asks (default: PyPI's JSON API)"
    )
    parser.add_argument("--osv-url", help="another OSV-API endpoint than OSV's public one (with --service osv)")
    args = parser.parse_args(argv)
    status, lines = judge(*run_pip_audit(args.lock, args.service, args.osv_url), args.service)
    print("\n".join(lines), file=sys.stdout if status == CLEAN else sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
