"""Peak memory of a service (the high-water RSS of its process and every worker it forked), and what it held."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import psutil

__all__ = ["cached_links", "peak_rss_mb"]

_CACHED = re.compile(r"^linkpulse_redirect_cached_links (\S+)$", re.MULTILINE)


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def peak_rss_mb(pid: int | None) -> dict[str, float]:
    """`{"max": MiB, "sum": MiB}` over the process tree of `pid` (each process's own peak; Linux only).

    MiB (2**20 bytes), though the JSON's key says `peak_memory_mb`, kept for the machines that read it.

    "max" is the largest single process (the figure a per-process limit meets); "sum" adds the workers.
    Read it before the processes exit: the kernel forgets a process's peak with it.
    """
    if pid is None:
        return {"max": 0.0, "sum": 0.0}
    try:
        tree = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return {"max": 0.0, "sum": 0.0}
    peaks = [_hwm_kb(p) / 1024 for p in tree]
    return {"max": round(max(peaks), 1), "sum": round(sum(peaks), 1)}


def cached_links(redirect_url: str, scrapes: int = 8) -> list[int]:
    """Links cached, as the redirect workers' `/metrics` report them: the distinct values seen, sorted.

    Each scrape is a new connection, which the kernel hands to one worker (one socket per worker), so a
    few scrapes reach each of them; a peak RSS means little without the number of links it held.
    """
    seen: set[int] = set()
    for _ in range(scrapes):
        try:
            found = _CACHED.search(httpx.get(f"{redirect_url}/metrics", timeout=10).text)
        except httpx.HTTPError:
            continue
        if found:
            seen.add(int(float(found.group(1))))
    return sorted(seen)
