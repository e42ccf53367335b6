"""Child processes that outlive a terminal's Ctrl-C and stop in the order we choose, and the port, pid and
readiness checks around them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["ManagedProcess", "StartError", "free_port", "http_ok", "pid_alive", "port_open", "stop_pid", "wait_until"]


class StartError(RuntimeError):
    """A server or service did not come up; the message names it and points at its log."""


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and not one this process handed out before.

    A stack picks every port before its servers bind them, and the kernel may offer a port it just offered
    again: once, a service was given NATS's port and its readiness check read NATS's greeting.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when a GET of `url` answers 200 within `timeout` seconds (refused, timed out or 503: False)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:  # URLError and HTTPError are OSErrors
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `check` until it holds; raise StartError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StartError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists and is not a zombie we could reap."""
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall back to signal 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid: int, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
    """Send `sig`, wait up to `timeout` for exit, then SIGKILL. Returns True if it exited on its own."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.05)
    return False


class ManagedProcess:
    """One child process with its own session (a terminal's Ctrl-C reaches us, not it) and log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path | None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.user = user
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def start(self) -> ManagedProcess:
        out = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it from here
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                stdin=subprocess.DEVNULL,
                env=self.env,
                user=self.user,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def fail(self, reason: str) -> StartError:
        """A StartError for this process, carrying the end of its log."""
        tail = self.log_tail()
        where = f" (log: {self.log_path})" if self.log_path else ""
        return StartError(f"{self.name}: {reason}{where}" + (f"\n{tail}" if tail else ""))

    def wait_ready(self, check: Callable[[], bool], timeout: float) -> None:
        """Poll `check` until it holds, failing at once if the process died."""
        deadline = time.monotonic() + timeout
        while not check():
            if not self.alive():
                raise self.fail(f"exited with code {self.proc.returncode if self.proc else '?'}")
            if time.monotonic() > deadline:
                raise self.fail(f"not ready after {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> None:
        """Ask it to stop (its own graceful signal), SIGKILL after `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_pid(self.proc.pid, timeout, self.stop_signal)
        self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP the whole process group: frozen with its sockets open, like a VM pause or a stalled disk.

        The group, not the pid: Postgres' backends are children of the postmaster, and stopping only the
        postmaster would leave every open connection answering.
        """
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the process group stopped by `pause`."""
        assert self.proc is not None, f"{self.name} was never started"
        os.killpg(self.proc.pid, signal.SIGCONT)
