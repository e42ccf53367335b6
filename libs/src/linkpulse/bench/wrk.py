"""The load tool: wrk (Debian's package) driven by load.lua, and what it reports, parsed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = ["BenchError", "LoadSpec", "WrkResult", "find_wrk", "parse_wrk_output", "run_wrk"]

_MARKER = "LINKPULSE_BENCH_JSON "


class BenchError(RuntimeError):
    """Something the bench needs is missing or misbehaved; the message says what and how to fix it."""


@dataclass(frozen=True, kw_only=True)
class LoadSpec:
    """One wrk run: where, for how long, how hard, and which paths."""

    url: str
    codes_file: Path
    duration: float = 10.0
    connections: int = 64
    threads: int = 2
    zipf: float = 1.0
    """Exponent of the rank-popularity law (1/rank^s): 1.0 is Zipf's, 0 is uniform."""
    order: str = "zipf"
    """"zipf" draws codes at random by popularity; "cycle" takes every code in turn (the warm-up)."""
    method: str = "GET"
    prefix: str = "/"
    suffix: str = ""
    auth: str = ""
    limit: int = 0
    """Per-thread request count after which a thread stops (0: run for `duration`)."""
    timeout: float = 2.0


@dataclass(frozen=True, kw_only=True)
class WrkResult:
    """wrk's own summary: completed requests, socket errors, status >= 400 count, latency percentiles (ms)."""

    requests: int
    duration_s: float
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def bad_status(self) -> int:
        """Answers with status >= 400: wrk counts these; a redirect never answers 2xx, so the rest are 3xx."""
        return self.errors.get("status", 0)

    @property
    def socket_errors(self) -> int:
        return sum(v for k, v in self.errors.items() if k != "status")


def find_wrk() -> str:
    """The wrk binary on PATH, or a BenchError that says how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk is not on PATH: install it (Debian/Ubuntu: `apt-get install wrk`) and run again")
    return found


def parse_wrk_output(text: str) -> WrkResult:
    """The figures of one wrk run from its stdout (the JSON line load.lua's done() prints).

    Raises:
        BenchError: no such line (wrk failed before done(), or another script was used).
    """
    for line in text.splitlines():
        if line.startswith(_MARKER):
            raw = json.loads(line[len(_MARKER) :])
            break
    else:
        raise BenchError(f"wrk printed no summary line; its output was:\n{text[-2000:]}")
    latency = {k: v / 1000.0 for k, v in raw["latency_us"].items()}
    return WrkResult(
        requests=int(raw["requests"]),
        duration_s=raw["duration_us"] / 1e6,
        errors={k: int(v) for k, v in raw["errors"].items()},
        latency_ms=latency,
    )


def run_wrk(spec: LoadSpec, *, wrk: str | None = None) -> WrkResult:
    """Run wrk with load.lua as `spec` says and return its summary; BenchError if it fails."""
    script = resources.files("linkpulse.bench").joinpath("load.lua")
    with resources.as_file(script) as script_path:
        env = {
            **os.environ,
            "LINKPULSE_BENCH_CODES": str(spec.codes_file),
            "LINKPULSE_BENCH_ZIPF": repr(spec.zipf),
            "LINKPULSE_BENCH_ORDER": spec.order,
            "LINKPULSE_BENCH_METHOD": spec.method,
            "LINKPULSE_BENCH_PREFIX": spec.prefix,
            "LINKPULSE_BENCH_SUFFIX": spec.suffix,
            "LINKPULSE_BENCH_AUTH": spec.auth,
            "LINKPULSE_BENCH_LIMIT": str(spec.limit),
        }
        argv = [
            wrk or find_wrk(),
            f"-t{spec.threads}",
            f"-c{max(spec.connections, spec.threads)}",
            f"-d{max(spec.duration, 1.0):.0f}s",
            f"--timeout={spec.timeout:g}s",
            "--latency",
            "-s",
            str(script_path),
            spec.url,
        ]
        # Bounded: wrk stops itself after -d; the margin covers its start and its last timeouts.
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=spec.duration + 60, check=False)
    if proc.returncode != 0:
        raise BenchError(f"wrk exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return parse_wrk_output(proc.stdout)
