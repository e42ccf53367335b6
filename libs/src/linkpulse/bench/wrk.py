"""The load tool: wrk (Debian's package) driven by load.lua, and what it reports, parsed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = ["BenchError", "LoadSpec", "WrkResult", "find_wrk", "parse_wrk_output", "run_wrk"]

_MARKER = "LINKPULSE_BENCH_JSON "
_THREAD_DONE = "LINKPULSE_BENCH_THREAD_DONE"


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


def run_wrk(spec: LoadSpec) -> WrkResult:
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
            find_wrk(),
            f"-t{spec.threads}",
            f"-c{max(spec.connections, spec.threads)}",
            f"-d{max(spec.duration, 1.0):.0f}s",
            f"--timeout={spec.timeout:g}s",
            "--latency",
            "-s",
            str(script_path),
            spec.url,
        ]
        returncode, stdout, stderr = _run(argv, env, spec)
    if returncode != 0:
        raise BenchError(f"wrk exited {returncode}: {stderr.strip() or stdout.strip()}")
    return parse_wrk_output(stdout)


def _run(argv: list[str], env: dict[str, str], spec: LoadSpec) -> tuple[int, str, str]:
    """Run wrk; (exit code, stdout, stderr). With a limit, stop it once every thread has reached it.

    wrk's main thread sleeps for the whole -d whatever its threads do, so a thread that stops at its
    limit only idles: a million-link warm-up (-d sized generously, in case the server is slow) would
    wait out its 6,000 s. load.lua prints a line when a thread is done, and the last one's line gets wrk
    a SIGINT, on which it stops at once and still prints its summary.
    """
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    out: list[str] = []
    err: list[str] = []

    def read_stdout() -> None:
        done = 0
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith(_THREAD_DONE):
                done += 1
                if spec.limit and done >= spec.threads and proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            else:
                out.append(line)

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)]  # type: ignore[arg-type]  # fmt: skip
    for reader in readers:
        reader.start()
    try:
        # Bounded: wrk stops itself after -d; the margin covers its start and its last timeouts.
        proc.wait(timeout=spec.duration + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise BenchError(f"wrk did not finish within {spec.duration + 60:.0f} s") from None
    except BaseException:  # Ctrl-C or the bench's SIGTERM: wrk goes with the run
        proc.kill()
        proc.wait()
        raise
    finally:
        for reader in readers:
            reader.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    return proc.returncode, "".join(out), "".join(err)
