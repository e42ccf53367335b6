"""The ceiling: nginx (Debian's package) answering a fixed 302 on this machine, loaded like Linkpulse."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from linkpulse.bench.wrk import BenchError
from linkpulse.localstack.process import free_port, port_open, wait_until

__all__ = ["find_nginx", "nginx_ceiling", "usable_cores"]

_CONF = """\
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            add_header Cache-Control "private, max-age=90";
            return 302 http://127.0.0.1/target;
        }}
    }}
}}
"""


def usable_cores() -> int:
    """The cores this process may run on (nginx's `worker_processes auto` counts the same way)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def find_nginx() -> str:
    """The nginx binary (PATH or /usr/sbin), or a BenchError that says how to install it."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise BenchError(
            "nginx is not installed; the bench measures it as the ceiling: "
            "`apt-get install nginx-light` (Debian/Ubuntu), or pass --no-ceiling"
        )
    return found


@contextmanager
def nginx_ceiling(root: Path, workers: int) -> Iterator[str]:
    """Run nginx with `workers` worker processes on a free loopback port; yields its URL, stops it after."""
    nginx = find_nginx()
    root.mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(_CONF.format(workers=workers, root=root, port=port))
    proc = subprocess.Popen(
        [nginx, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 10, "nginx listening")
        if proc.poll() is not None:
            raise BenchError(f"nginx exited {proc.returncode}: {(proc.stderr.read() if proc.stderr else b'').decode()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
