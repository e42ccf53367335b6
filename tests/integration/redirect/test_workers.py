"""Several workers: each listens on its own SO_REUSEPORT socket, a dead one is replaced, SIGTERM stops all."""

from __future__ import annotations

import signal
import sys
import urllib.request
from pathlib import Path

import psutil

from linkpulse.localstack.process import ManagedProcess, free_port, wait_until


def _listening_pids(master: psutil.Process, port: int) -> set[int]:
    pids = set()
    for child in master.children():
        try:
            conns = child.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            pids.add(child.pid)
    return pids


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_two_workers_each_listen_a_dead_one_is_replaced_and_sigterm_stops_all(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {**service_env, "LINKPULSE_HTTP_PORT": str(port), "LINKPULSE_HTTP_WORKERS": "2",
           "LINKPULSE_PUBLISHER_SPILL_DIR": str(tmp_path / "spill")}  # fmt: skip
    proc = ManagedProcess(
        "redirect", [sys.executable, "-m", "linkpulse.redirect"], log_path=tmp_path / "r.log", env=env
    )
    proc.start()
    try:
        proc.wait_ready(lambda: _ready(port), 60)
        master = psutil.Process(proc.pid)
        # 1. Two workers, each with a listening socket of its own on the one port (the kernel balances them).
        wait_until(lambda: len(_listening_pids(master, port)) == 2, 30, "two listening workers")
        first = _listening_pids(master, port)
        # 2. A worker killed outright is replaced; the other one kept serving meanwhile.
        victim = psutil.Process(min(first))
        victim.kill()
        victim.wait(10)  # until its socket has left the port's group (its queued connections die with it)
        assert _ready(port)
        wait_until(lambda: len(_listening_pids(master, port) - {victim.pid}) == 2, 30, "the dead worker replaced")
        # 3. SIGTERM on the master reaches every worker; all drain and the master exits 0.
        workers = [psutil.Process(pid) for pid in _listening_pids(master, port)]
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(60) == 0, proc.log_tail()
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive and len(gone) == 2
        assert not _ready(port)
    finally:
        if proc.alive():
            proc.kill()
