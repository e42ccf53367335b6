"""Peak memory of a service: the high-water RSS (VmHWM) of its process and every worker it forked."""

from __future__ import annotations

from pathlib import Path

import psutil

__all__ = ["peak_rss_mb"]


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def peak_rss_mb(pid: int | None) -> dict[str, float]:
    """`{"max": MB, "sum": MB}` over the process tree of `pid` (each process's own peak; Linux only).

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
