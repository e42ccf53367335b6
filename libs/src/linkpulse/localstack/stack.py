"""`linkpulse up` / `down`: the servers (or given URLs), migrations, streams and the three services."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from linkpulse.db.migrate import migrate
from linkpulse.db.roles import login_role
from linkpulse.localstack.access import REDIS_OPERATOR, REDIS_USERS, stored_passwords, with_userinfo
from linkpulse.localstack.process import (
    ManagedProcess,
    StartError,
    free_port,
    http_ok,
    pid_alive,
    port_open,
    stop_pid,
)
from linkpulse.localstack.servers import NatsServer, PostgresServer, RedisServer
from linkpulse.messaging.permissions import SERVICE_USERS, SETUP_USER
from linkpulse.messaging.streams import ensure_streams_at
from linkpulse.settings import StreamsSettings, from_env

__all__ = ["SERVICE_START_TIMEOUT", "Stack", "StackInfo", "down", "read_info", "service_argv", "service_ready"]

SERVICES = ("redirect", "admin", "ingest")
# Services stop first (redirect drains its publisher into NATS), then the servers they need.
STOP_ORDER = ("redirect", "admin", "ingest", "nats", "redis", "postgres")
SERVICE_START_TIMEOUT = 60.0


@dataclass
class StackInfo:
    """What `stack.json` holds: where everything is, and the pid of each process we started.

    The server URLs are the operator's (NATS's setup user, Redis's default user, the Postgres superuser),
    with their passwords: the file is readable by its owner only. Each service gets its own (Stack.service_urls).
    """

    redirect_url: str
    admin_url: str
    admin_key: str
    nats_url: str
    redis_url: str
    database_url: str
    ingest_url: str = ""
    """Ingest's probe and metrics server (/healthz, /readyz, /metrics); "" in a stack.json from before it had one."""
    pids: dict[str, int | None] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"


def read_info(root: Path) -> StackInfo | None:
    """The stack recorded in `root/stack.json`, or None."""
    path = root / "stack.json"
    if not path.exists():
        return None
    return StackInfo(**json.loads(path.read_text()))


class Stack:
    """The local system in one folder: data under `data/`, logs under `logs/`, state in `stack.json`."""

    def __init__(self, root: Path, environ: Mapping[str, str], *, redirect_port: int = 8000,
                 admin_port: int = 8001, ingest_port: int = 9100, quiet_services: bool = True,
                 services: tuple[str, ...] = SERVICES,
                 service_environ: Mapping[str, Mapping[str, str]] | None = None) -> None:  # fmt: skip
        """Prepare a stack in `root`.

        `services` names the services `start` runs (the bench starts some later); `service_environ` adds
        variables to one service's environment only (`{"redirect": {"LINKPULSE_HTTP_WORKERS": "2"}}`).
        """
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}; known: {', '.join(SERVICES)}")
        self.start_with = services
        self.service_environ = {name: dict(env) for name, env in (service_environ or {}).items()}
        self.root = root.resolve()
        self.environ = dict(environ)
        self.redirect_port = _port_or_free(redirect_port)
        self.admin_port = _port_or_free(admin_port)
        self.ingest_port = _port_or_free(ingest_port)
        self.quiet_services = quiet_services
        self.servers: dict[str, NatsServer | RedisServer | PostgresServer] = {}
        self.services: dict[str, ManagedProcess] = {}
        self.info: StackInfo | None = None
        self.service_urls: dict[str, dict[str, str]] = {}
        """Service → its own `LINKPULSE_*_URL` variables, each with that service's user (set by `start`)."""

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def start(self) -> StackInfo:
        """Start everything in dependency order; on any failure stop what was started and raise."""
        existing = read_info(self.root)
        if existing is not None and any(p and pid_alive(p) for p in existing.pids.values()):
            raise StartError(f"a stack is already running from {self.root}: run `linkpulse down --dir {self.root}`")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            passwords = stored_passwords(self.root)
            urls = self._start_servers(passwords)
            clicks = from_env(StreamsSettings, self.environ).clicks
            logins = {service: passwords[f"postgres/{login_role(service)}"] for service in SERVICES}
            asyncio.run(migrate(urls["database"], logins))
            asyncio.run(ensure_streams_at(urls["nats"], clicks))
            self.service_urls = self._service_urls(urls, passwords)
            admin_key = self.environ.get("LINKPULSE_ADMIN_KEY") or self._stored_admin_key()
            self.info = StackInfo(
                redirect_url=f"http://127.0.0.1:{self.redirect_port}",
                admin_url=f"http://127.0.0.1:{self.admin_port}",
                admin_key=admin_key,
                nats_url=urls["nats"],
                redis_url=urls["redis"],
                database_url=urls["database"],
                ingest_url=f"http://127.0.0.1:{self.ingest_port}",
            )
            self._start_services(admin_key)
        except BaseException:
            self.stop()
            raise
        self.info.pids = {name: self._pid(name) for name in STOP_ORDER}
        path = self.root / "stack.json"
        path.write_text(self.info.to_json())
        path.chmod(0o600)
        return self.info

    def stop(self) -> None:
        """Stop services first, so they drain, then the servers."""
        for name in STOP_ORDER:
            proc = self.services.get(name)
            if proc is not None:
                proc.stop()
            server = self.servers.get(name)
            if server is not None:
                server.stop()
        info = read_info(self.root)
        if info is not None:
            (self.root / "stack.json").unlink(missing_ok=True)

    def wait(self) -> int:
        """Block until SIGINT/SIGTERM or until a process dies; then stop everything. Returns an exit code."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        code = 0
        while not stop.wait(0.5):
            dead = [p for p in [*self.services.values(), *(s.process for s in self.servers.values())]
                    if p is not None and not p.alive()]  # fmt: skip
            if dead:
                print(f"\n{dead[0].fail('exited unexpectedly')}\nstopping the stack", file=sys.stderr)
                code = 1
                break
        print("stopping: services first, then servers...", file=sys.stderr)
        self.stop()
        return code

    def _start_servers(self, passwords: Mapping[str, str]) -> dict[str, str]:
        data = self.root / "data"
        urls: dict[str, str] = {}
        given = {
            "nats": self.environ.get("LINKPULSE_NATS_URL"),
            "redis": self.environ.get("LINKPULSE_REDIS_URL"),
            "database": self.environ.get("LINKPULSE_DATABASE_URL"),
        }
        if given["nats"]:
            urls["nats"] = given["nats"]
        else:
            users = {user: passwords[f"nats/{user}"] for user in (SETUP_USER, *SERVICE_USERS)}
            self.servers["nats"] = NatsServer(data / "nats", log_path=self.logs / "nats.log", users=users).start()
            urls["nats"] = self.servers["nats"].url
        if given["redis"]:
            urls["redis"] = given["redis"]
        else:
            users = {user: passwords[f"redis/{user}"] for user in (REDIS_OPERATOR, *REDIS_USERS)}
            self.servers["redis"] = RedisServer(data / "redis", log_path=self.logs / "redis.log", users=users).start()
            urls["redis"] = self.servers["redis"].url
        if given["database"]:
            urls["database"] = given["database"]
        else:
            self.servers["postgres"] = PostgresServer(data / "postgres", log_path=self.logs / "postgres.log",
                                                      password=passwords["postgres/postgres"]).start()  # fmt: skip
            urls["database"] = self.servers["postgres"].url
        return urls

    def _service_urls(self, urls: Mapping[str, str], passwords: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """Each service's URLs: its own NATS and Redis users on servers the stack started (given URLs are used
        as they are), and its own Postgres login role, which the setup step made on either."""
        nats_server, redis_server = self.servers.get("nats"), self.servers.get("redis")
        out: dict[str, dict[str, str]] = {}
        for service in SERVICES:
            role = login_role(service)
            env = {
                "LINKPULSE_NATS_URL": nats_server.url_for(service) if isinstance(nats_server, NatsServer)
                else urls["nats"],
                "LINKPULSE_DATABASE_URL": with_userinfo(urls["database"], role, passwords[f"postgres/{role}"]),
            }  # fmt: skip
            if service in REDIS_USERS:
                env["LINKPULSE_REDIS_URL"] = (
                    redis_server.url_for(service) if isinstance(redis_server, RedisServer) else urls["redis"]
                )
            out[service] = env
        return out

    def service_envs(self, admin_key: str) -> dict[str, dict[str, str]]:
        """Each service's environment: the caller's (so `OTEL_*` and `LINKPULSE_*` pass through) plus the stack's.

        Each service connects as its own user (`service_urls`); before `start` made them, with the stack's URLs.
        """
        assert self.info is not None
        base = {**self.environ, "LINKPULSE_NATS_URL": self.info.nats_url,
                "LINKPULSE_DATABASE_URL": self.info.database_url}  # fmt: skip
        redis = {"LINKPULSE_REDIS_URL": self.info.redis_url}  # ingest never uses Redis
        envs = {
            "redirect": {**base, **redis, "LINKPULSE_HTTP_PORT": str(self.redirect_port),
                         "LINKPULSE_PUBLISHER_SPILL_DIR": str(self.root / "spill" / "redirect")},
            "admin": {**base, **redis, "LINKPULSE_HTTP_PORT": str(self.admin_port), "LINKPULSE_ADMIN_KEY": admin_key,
                      "LINKPULSE_ADMIN_PUBLIC_URL": self.info.redirect_url},
            "ingest": {**base, "LINKPULSE_INGEST_METRICS_PORT": str(self.ingest_port)},
        }  # fmt: skip
        for name, env in envs.items():
            env.update(self.service_urls.get(name, {}))
            # One service name for three processes would merge them in every trace view.
            env["OTEL_SERVICE_NAME"] = f"linkpulse-{name}"
            env.update(self.service_environ.get(name, {}))
        return envs

    def _start_services(self, admin_key: str) -> None:
        names = [name for name in ("ingest", "admin", "redirect") if name in self.start_with]
        for name in names:
            self._spawn(name, admin_key)
        for name in names:
            self._wait_service_ready(name)

    def start_service(self, name: str) -> None:
        """Start one service of a started stack (again, if it was stopped) and wait until it is ready."""
        assert self.info is not None, "start the stack first"
        self._spawn(name, self.info.admin_key)
        self._wait_service_ready(name)
        self.info.pids[name] = self._pid(name)

    def stop_service(self, name: str) -> None:
        """Stop one service (SIGTERM: it drains as in a rollout); the servers and the others stay up."""
        proc = self.services.pop(name, None)
        if proc is not None:
            proc.stop()
        if self.info is not None:
            self.info.pids[name] = None

    def _spawn(self, name: str, admin_key: str) -> None:
        log_path = self.logs / f"{name}.log" if self.quiet_services else None
        env = self.service_envs(admin_key)[name]
        self.services[name] = ManagedProcess(name, service_argv(name), log_path=log_path, env=env).start()

    def _wait_service_ready(self, name: str) -> None:
        port = {"ingest": self.ingest_port, "admin": self.admin_port, "redirect": self.redirect_port}[name]
        self.services[name].wait_ready(lambda: service_ready(port), SERVICE_START_TIMEOUT)

    def _stored_admin_key(self) -> str:
        # Kept in the state folder so the key survives a restart; readable by this user only.
        path = self.root / "admin_key"
        if path.exists():
            return path.read_text().strip()
        key = "lp_" + secrets.token_urlsafe(32)
        path.touch(mode=0o600)
        path.write_text(key + "\n")
        return key

    def _pid(self, name: str) -> int | None:
        if name in self.services:
            return self.services[name].pid
        server = self.servers.get(name)
        return server.process.pid if server is not None and server.process is not None else None


def down(root: Path, timeout: float = 30.0) -> list[str]:
    """Stop a detached stack recorded in `root/stack.json`; returns the names stopped."""
    info = read_info(root)
    if info is None:
        return []
    stopped = []
    for name in STOP_ORDER:
        pid = info.pids.get(name)
        if pid and pid_alive(pid):
            stop_pid(pid, timeout, signal.SIGINT if name == "postgres" else signal.SIGTERM)
            stopped.append(name)
    (root / "stack.json").unlink(missing_ok=True)
    return stopped


def _port_or_free(port: int) -> int:
    if port and not port_open(port):
        return port
    return free_port()


def service_argv(service: str) -> list[str]:
    """How a service process runs: `python -m linkpulse.<service>` with this interpreter."""
    return [sys.executable, "-m", f"linkpulse.{service}"]


def service_ready(port: int) -> bool:
    """True when the service whose HTTP (ingest: probe) port is `port` answers /readyz with 200.

    The readiness the chart's probes use: ingest is ready once every shard's consumer is bound.
    """
    return http_ok(f"http://127.0.0.1:{port}/readyz")
