"""Run a Litestar app factory under uvicorn with the service's HTTP settings, one or several processes."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import resource
import signal
import socket
import sys
import time
from types import FrameType

import structlog
import uvicorn

from linkpulse.logs import configure_logging
from linkpulse.settings import HttpSettings
from linkpulse.web.edge import LINGERING_MAX, EdgeProtocol

__all__ = ["loaded_server", "serve"]

log = structlog.get_logger(__name__)

RESTART_PAUSE = 1.0
"""Seconds before a worker that died unasked is started again (a crash loop must not spin the CPU)."""


FILES_RESERVE = 256 + LINGERING_MAX
"""Open files a worker keeps beside its client connections: pools, NATS, Redis, logs, the spill file, and
refused connections lingering."""


HttpProtocol = type[EdgeProtocol]
"""The edge's protocol class, or a subclass (the redirect service's answers hot redirects inline)."""


def _config(factory: str, http: HttpSettings, graceful_timeout: float, protocol: HttpProtocol) -> uvicorn.Config:
    return uvicorn.Config(
        factory,
        factory=True,
        http=protocol.configured(http),  # built here, in the worker: the class passed to it stays importable
        host=http.host,
        port=http.port,
        log_config=None,  # its loggers propagate to configure_logging's one handler: JSON lines, as ours
        log_level=http.log_level.lower(),
        access_log=False,  # one line per redirect would cost more than the redirect itself
        lifespan="on",
        timeout_graceful_shutdown=graceful_timeout,
        server_header=False,
        proxy_headers=False,  # forwarded headers are trusted only from configured proxies, by the app
        backlog=4096,
    )


def loaded_server(config: uvicorn.Config) -> uvicorn.Server:
    """A server for `config` with the app already built, and everything built so far frozen for the GC.

    Modules, the app and its routes (some 75,000 tracked objects in the redirect service) live as long as
    the process; frozen, a full collection no longer walks them. Under `linkpulse bench` a redirect
    worker's full collections took 49-60 ms each, a stall every request waiting behind it paid (the
    p99.9 was 49-76 ms in four runs); frozen, they took 2-25 ms and the p99.9 was 14-23 ms.
    """
    config.load()
    gc.freeze()
    return uvicorn.Server(config)


def _room_for_connections(http: HttpSettings) -> None:
    """Raise the soft open-files limit (up to the hard one) so `max_connections` fit beside the reserve.

    The connection bound is meant to act before the process runs out of descriptors: past the limit
    the kernel refuses accept() and clients wait in the backlog instead of getting a 503.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = http.max_connections + FILES_RESERVE
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    if raised < wanted:
        log.warning("server.open_files_limit", limit=raised, max_connections=http.max_connections,
                    hint="lower LINKPULSE_HTTP_MAX_CONNECTIONS or raise the hard open-files limit")  # fmt: skip


def _own_socket(http: HttpSettings) -> socket.socket:
    """A listening socket of this worker's own on the shared port (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in http.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((http.host, http.port))
    return sock


def _worker(factory: str, http: HttpSettings, graceful_timeout: float, protocol: HttpProtocol) -> None:
    configure_logging(http.log_level)  # a spawned interpreter starts with none
    try:
        config = _config(factory, http, graceful_timeout, protocol)
        # uvicorn handles SIGTERM/SIGINT itself: stop accepting, finish in-flight requests, run the shutdown.
        loaded_server(config).run(sockets=[_own_socket(http)])
    except Exception:
        # multiprocessing would print the traceback as plain text; the supervisor restarts the worker.
        log.exception("server.worker_failed")
        sys.exit(1)


def serve(
    factory: str, http: HttpSettings, *, graceful_timeout: float = 20.0, protocol: HttpProtocol = EdgeProtocol
) -> None:
    """Serve `module:create_app` until SIGTERM/SIGINT, then finish in-flight requests and run shutdown.

    With several workers each process listens on the port with its own SO_REUSEPORT socket, so the kernel
    spreads connections over them evenly. (With one shared socket, as uvicorn's own workers have, the
    process that happens to be awake accepts most of a burst of connections and keeps them: measured with
    `linkpulse bench`, a second worker then added little; docs/performance.md.)

    Args:
        factory: import string of a zero-argument app factory.
        http: bind address, port, worker processes, log level and the edge's limits.
        graceful_timeout: seconds in-flight requests get after SIGTERM before the lifespan shutdown.
        protocol: the HTTP protocol class, given `http`'s limits (it must be importable by worker processes).
    """
    _room_for_connections(http)  # before any worker starts: they inherit the limit
    if http.workers <= 1 or http.port == 0 or not hasattr(socket, "SO_REUSEPORT"):
        loaded_server(_config(factory, http, graceful_timeout, protocol)).run()
        return
    _supervise(factory, http, graceful_timeout, protocol)


def _supervise(factory: str, http: HttpSettings, graceful_timeout: float, protocol: HttpProtocol) -> None:
    """Start `http.workers` processes, restart one that dies unasked, pass SIGTERM/SIGINT on and wait."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no event loop or sockets inherited
    stopping: list[int] = []

    def on_signal(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def start() -> multiprocessing.process.BaseProcess:
        proc = context.Process(target=_worker, args=(factory, http, graceful_timeout, protocol), daemon=False)
        proc.start()
        return proc

    workers = [start() for _ in range(http.workers)]
    log.info("server.workers", workers=http.workers, port=http.port, reuse_port=True)
    while not stopping:
        time.sleep(0.2)  # the supervisor's tick: a signal or a dead worker is noticed within it
        for i, proc in enumerate(workers):
            if not proc.is_alive() and not stopping:
                log.warning("server.worker_died", pid=proc.pid, exitcode=proc.exitcode)
                time.sleep(RESTART_PAUSE)
                workers[i] = start()
    # Each worker drains as uvicorn does on its own (stop accepting, finish requests, run the shutdown).
    # Always SIGTERM: after a terminal's Ctrl-C (which reached the workers too) a second SIGINT would
    # make uvicorn skip the drain.
    for proc in workers:
        if proc.pid is not None and proc.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + graceful_timeout + 30.0
    for proc in workers:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()
    sys.exit(0)
