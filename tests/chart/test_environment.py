"""Each container gets exactly the variables its settings class reads, and secrets stay in Secrets."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import msgspec
import pytest
from tests.chart.conftest import CHART, EXISTING_SECRETS, SECRETS, VALUE_SETS, Rendered, render, render_set

from linkpulse.admin.settings import AdminSettings
from linkpulse.bots import rules_from_settings
from linkpulse.ingest.settings import IngestSettings
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.sampling import SAMPLERS, SamplingPolicy
from linkpulse.settings import (
    ClicksSettings,
    DatabaseSettings,
    MigrateSettings,
    NatsSettings,
    RolesSettings,
    StreamsSettings,
    env_names,
    from_env,
)
from linkpulse.telemetry import OTEL_VARIABLES, Tracing


class SetupSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The admin pods' setup init container runs `linkpulse migrate` and `linkpulse streams`."""

    nats: NatsSettings = NatsSettings()
    clicks: ClicksSettings = ClicksSettings()
    database: DatabaseSettings = DatabaseSettings()
    roles: RolesSettings = RolesSettings()


# container name → (settings class, variables it must get)
CONTAINERS: dict[str, tuple[type[msgspec.Struct], set[str]]] = {
    "redirect": (
        RedirectSettings,
        {
            "LINKPULSE_NATS_URL",
            "LINKPULSE_REDIS_URL",
            "LINKPULSE_DATABASE_URL",
            "LINKPULSE_HTTP_HOST",
            "LINKPULSE_HTTP_PORT",
            "LINKPULSE_CLICKS_SHARDS",
            "LINKPULSE_CLICKS_REPLICAS",
            "LINKPULSE_PUBLISHER_SPILL_DIR",
            "LINKPULSE_PUBLISHER_DRAIN_TIMEOUT",
        },
    ),
    "ingest": (
        IngestSettings,
        {
            "LINKPULSE_NATS_URL",
            "LINKPULSE_DATABASE_URL",
            "LINKPULSE_CLICKS_SHARDS",
            "LINKPULSE_INGEST_METRICS_PORT",
            "LINKPULSE_INGEST_METRICS_HOST",
        },
    ),
    "admin": (
        AdminSettings,
        {
            "LINKPULSE_NATS_URL",
            "LINKPULSE_REDIS_URL",
            "LINKPULSE_DATABASE_URL",
            "LINKPULSE_HTTP_HOST",
            "LINKPULSE_HTTP_PORT",
            "LINKPULSE_ADMIN_KEY",
            "LINKPULSE_ADMIN_PUBLIC_URL",
        },
    ),
    "migrate": (MigrateSettings, {"LINKPULSE_DATABASE_URL"}),
    "streams": (StreamsSettings, {"LINKPULSE_NATS_URL", "LINKPULSE_CLICKS_SHARDS", "LINKPULSE_CLICKS_REPLICAS"}),
    "setup": (
        SetupSettings,
        {"LINKPULSE_NATS_URL", "LINKPULSE_DATABASE_URL", "LINKPULSE_CLICKS_SHARDS", "LINKPULSE_CLICKS_REPLICAS"},
    ),
    "deferred": (MigrateSettings, set()),  # first-install hook that only logs (see test_workloads)
}


ROLE_PASSWORDS = {f"LINKPULSE_ROLES_{f.upper()}" for f in RolesSettings.__struct_fields__ if f.endswith("_password")}


def test_settings_classes_read_what_the_chart_relies_on() -> None:
    # A renamed setting must break this suite, not a cluster.
    for settings, required in CONTAINERS.values():
        assert required <= set(env_names(settings)), settings.__name__
    assert env_names(MigrateSettings) == [
        *(f"LINKPULSE_DATABASE_{f.upper()}" for f in DatabaseSettings.__struct_fields__),
        *(f"LINKPULSE_ROLES_{f.upper()}" for f in RolesSettings.__struct_fields__),
    ]


def test_each_container_gets_only_variables_its_settings_read(rendered: Rendered) -> None:
    seen = set()
    for workload, container in rendered.linkpulse_containers():
        settings, required = CONTAINERS[container["name"]]
        env = rendered.environment(container)
        names = {name for name in env if not name.startswith("OTEL_")}
        otel = set(env) - names
        assert otel <= OTEL_VARIABLES, f"{container['name']} gets OTEL variables tracing never reads: {otel}"
        if container["name"] in {"redirect", "ingest", "admin"}:
            assert env["OTEL_SERVICE_NAME"] == f"linkpulse-{container['name']}"
        where = f"{workload['metadata']['name']}/{container['name']}"
        assert names <= set(env_names(settings)), f"{where} gets unread {sorted(names - set(env_names(settings)))}"
        assert required <= names, f"{where} lacks {sorted(required - names)}"
        if container["name"] == "migrate":
            # `linkpulse migrate` reads nothing else; the role passwords unless the DSN is an existing Secret's.
            assert names - ROLE_PASSWORDS == {"LINKPULSE_DATABASE_URL"}
        seen.add(container["name"])
    assert {"redirect", "ingest", "admin"} <= seen


def test_values_parse_with_the_real_settings_classes(rendered: Rendered) -> None:
    for _, container in rendered.linkpulse_containers():
        if container["name"] in {"migrate", "deferred"}:
            continue
        settings_cls, _ = CONTAINERS[container["name"]]
        env = rendered.environment(container)
        settings = from_env(settings_cls, env)  # raises SettingsError on a value it cannot take
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if container["name"] in {"redirect", "admin"}:
            assert settings.http.port == ports["http"]
            assert settings.http.host == "0.0.0.0"
        if container["name"] == "ingest":
            assert settings.ingest.metrics_port == ports["metrics"]
            assert settings.ingest.metrics_host == "0.0.0.0"


def test_every_tuning_value_reaches_its_setting() -> None:
    out = render_set("everything")
    env = {c["name"]: out.environment(c) for _, c in out.linkpulse_containers()}
    # Helm holds numbers as float64 and prints 2e+06; the chart writes integers out in full.
    assert env["redirect"]["LINKPULSE_CACHE_MAX_ENTRIES"] == "2000000"
    assert env["setup"]["LINKPULSE_CLICKS_MAX_BYTES"] == "4294967296"
    redirect = from_env(RedirectSettings, env["redirect"])
    assert redirect.cache.max_entries == 2_000_000
    assert redirect.cache.negative_max_entries == 50_000 and redirect.cache.click_count_refresh == 0.5
    assert redirect.publisher.queue_max == 200_000 and redirect.publisher.linger == 0.005
    assert redirect.publisher.drain_timeout == 15 and redirect.publisher.replay_concurrency == 32
    assert redirect.proxy.trusted == "10.0.0.0/8,fd00::/8" and redirect.proxy.anonymize_ip is False
    assert redirect.proxy.country_header == "x-country"
    assert (redirect.database.pool_min, redirect.database.pool_max, redirect.database.command_timeout) == (2, 20, 15)
    assert redirect.http.workers == 2 and redirect.http.log_level == "warning"
    assert redirect.redis.timeout == 0.5 and redirect.redis.ttl == 43200
    assert redirect.nats.reconnect_wait == 0.75 and redirect.nats.connect_timeout == 3
    ingest = from_env(IngestSettings, env["ingest"])
    assert (ingest.ingest.batch_size, ingest.ingest.max_wait, ingest.ingest.retry_delay) == (500, 0.25, 2)
    assert ingest.ingest.linger == 0.05
    assert (ingest.ingest.batch_bytes, ingest.ingest.concurrent_stores) == (16_000_000, 4)
    assert ingest.ingest.log_level == "debug" and ingest.ingest.retention_days == 90
    admin = from_env(AdminSettings, env["admin"])
    assert admin.admin.max_body_bytes == 2_097_152 and admin.admin.relay_interval == 0.5
    assert admin.admin.allow_private_targets is True and admin.proxy.trusted == "10.0.0.0/8"
    assert (admin.admin.auth_failures, admin.admin.auth_failure_window) == (5, 60)
    assert admin.admin.key == SECRETS["admin_key"]
    streams = from_env(StreamsSettings, env["setup"])  # the init container (the install defers the hook)
    assert streams.clicks.max_bytes == 4_294_967_296 and streams.clicks.max_age == 86400
    assert streams.clicks.duplicate_window == 300 and streams.clicks.ack_wait == 90


def test_bot_patterns_reach_redirect_and_ingest_one_per_line() -> None:
    # One per line: a regular expression may hold a comma, so the chart's usual comma join would split it.
    out = render({"config": {"bots": {"patterns": ["Zebrafish/", "^probe{1,3}"]}}})
    env = {c["name"]: out.environment(c) for _, c in out.linkpulse_containers()}
    for service, settings in (("redirect", RedirectSettings), ("ingest", IngestSettings)):
        assert env[service]["LINKPULSE_BOTS_PATTERNS"] == "Zebrafish/\n^probe{1,3}"
        assert rules_from_settings(from_env(settings, env[service]).bots).extra == ("Zebrafish/", "^probe{1,3}")
    assert "LINKPULSE_BOTS_PATTERNS" not in env["admin"]
    default = render({})
    assert not any("LINKPULSE_BOTS_PATTERNS" in default.environment(c) for _, c in default.linkpulse_containers())


def test_an_ingest_linger_of_zero_is_written_not_dropped() -> None:
    # 0 turns lingering off; a template that tested the value for truth would leave the 0.2 s default.
    out = render({"ingest": {"linger": 0}})
    env = {c["name"]: out.environment(c) for _, c in out.linkpulse_containers()}
    assert env["ingest"]["LINKPULSE_INGEST_LINGER"] == "0"
    assert from_env(IngestSettings, env["ingest"]).ingest.linger == 0


def test_all_clicks_settings_agree_across_publishers_consumers_and_setup(rendered: Rendered) -> None:
    clicks = {
        container["name"]: from_env(StreamsSettings, rendered.environment(container)).clicks
        for _, container in rendered.linkpulse_containers()
        if container["name"] in {"redirect", "ingest", "streams", "setup"}
    }
    assert len(set(clicks.values())) == 1, clicks
    assert next(iter(clicks.values())).shards == rendered.values["config"]["clicks"]["shards"]


@pytest.mark.parametrize(
    ("value_set", "replicas"), [("defaults", 3), ("everything", 3), ("autoscaling-off", 1), ("external-plain", 1)]
)
def test_clicks_replicas_follow_the_bundled_nats_size(value_set: str, replicas: int) -> None:
    out = render_set(value_set, install=False)
    for _, container in out.linkpulse_containers():
        env = out.environment(container)
        if "LINKPULSE_CLICKS_SHARDS" in env:
            assert env["LINKPULSE_CLICKS_REPLICAS"] == str(replicas), container["name"]


def test_connection_urls_point_at_the_bundled_services_each_with_its_own_user() -> None:
    out = render_set("known-secrets")
    env = {c["name"]: out.environment(c) for _, c in out.linkpulse_containers()}
    for service in ("redirect", "ingest", "admin"):
        nats_password = out.secret_value("linkpulse-nats", service)
        assert env[service]["LINKPULSE_NATS_URL"] == f"nats://{service}:{nats_password}@linkpulse-nats:4222"
        role_password = out.secret_value("linkpulse", f"database-password-{service}")
        assert env[service]["LINKPULSE_DATABASE_URL"] == (
            f"postgresql://linkpulse_{service}_login:{role_password}@linkpulse-timescaledb:5432/linkpulse"
        )
    for service in ("redirect", "admin"):
        redis_password = out.secret_value("linkpulse-redis", f"{service}-password")
        assert env[service]["LINKPULSE_REDIS_URL"] == f"redis://{service}:{redis_password}@linkpulse-redis:6379/0"
    assert "LINKPULSE_REDIS_URL" not in env["ingest"]
    # Only the setup step uses the database owner and the NATS setup user, and it sets the roles' passwords.
    setup = env["setup"]
    assert setup["LINKPULSE_DATABASE_URL"] == (
        f"postgresql://linkpulse:{SECRETS['tsdb_password']}@linkpulse-timescaledb:5432/linkpulse"
    )
    assert setup["LINKPULSE_NATS_URL"].startswith("nats://setup:")
    for service in ("redirect", "ingest", "admin"):
        assert setup[f"LINKPULSE_ROLES_{service.upper()}_PASSWORD"] == out.secret_value(
            "linkpulse", f"database-password-{service}"
        )
    assert out.get("Service", "linkpulse-nats")["spec"]["ports"][0]["port"] == 4222
    assert out.get("Service", "linkpulse-redis")["spec"]["ports"][0]["port"] == 6379
    assert out.get("Service", "linkpulse-timescaledb")["spec"]["ports"][0]["port"] == 5432


def test_an_external_database_url_gives_each_service_its_role_on_the_same_server() -> None:
    out = render_set("external-plain")
    env = {c["name"]: out.environment(c) for _, c in out.linkpulse_containers()}
    for service in ("redirect", "ingest", "admin"):
        password = out.secret_value("linkpulse", f"database-password-{service}")
        assert env[service]["LINKPULSE_DATABASE_URL"] == (
            f"postgresql://linkpulse_{service}_login:{password}@pg.example:5432/linkpulse"
        )
    # An existing Secret's DSN cannot be rewritten: every container uses it.
    existing = render_set("external-secrets")
    urls = {existing.environment(c).get("LINKPULSE_DATABASE_URL") for _, c in existing.linkpulse_containers()}
    assert urls - {None} == {EXISTING_SECRETS[("lp-database", "dsn")]}
    off = render({"databaseRoles": {"enabled": False}})
    envs = [off.environment(c) for _, c in off.linkpulse_containers()]
    assert {e["LINKPULSE_DATABASE_URL"] for e in envs if "LINKPULSE_DATABASE_URL" in e} == {
        off.secret_value("linkpulse", "database-url")
    }
    assert not any(name.startswith("LINKPULSE_ROLES_") for e in envs for name in e)


def test_generated_secrets_are_one_value_per_render() -> None:
    out = render_set("defaults", install=False)  # upgrade: the hook Secret carries the DSN too
    password = out.secret_value("linkpulse-timescaledb", "password")
    redis_password = out.secret_value("linkpulse-redis", "password")
    assert len(password) == 32 and len(redis_password) == 32 and password != redis_password
    dsn = out.secret_value("linkpulse", "database-url")
    assert f":{password}@" in dsn and out.secret_value("linkpulse-setup", "database-url") == dsn
    for service in ("redirect", "ingest", "admin"):
        role = out.secret_value("linkpulse", f"database-password-{service}")
        assert out.secret_value("linkpulse-setup", f"database-password-{service}") == role
        assert f"_login:{role}@" in out.secret_value("linkpulse", f"database-url-{service}")
        nats_password = out.secret_value("linkpulse-nats", service)
        assert f":{nats_password}@" in out.secret_value("linkpulse", f"nats-url-{service}")
    for service in ("redirect", "admin"):
        user_password = out.secret_value("linkpulse-redis", f"{service}-password")
        assert f":{user_password}@" in out.secret_value("linkpulse", f"redis-url-{service}")
    generated = [out.secret_value("linkpulse-nats", u) for u in ("setup", "redirect", "admin", "ingest")]
    assert len(set(generated)) == 4 and all(len(p) == 32 for p in generated)
    key = out.secret_value("linkpulse", "admin-key")
    assert key.startswith("lp_") and len(key) == 46
    assert render_set("defaults").secret_value("linkpulse", "admin-key") != key  # random, not a constant


@pytest.mark.parametrize("value_set", ["known-secrets", "everything", "external", "external-plain"])
def test_secrets_never_appear_outside_secrets(value_set: str) -> None:
    out = render_set(value_set, install=False)
    values = json.dumps(out.values)
    secrets = [s for s in (*SECRETS.values(), "dbPasswordInlineForChartTests") if s in values]
    assert secrets, "the value set gives no secret to look for"
    stored = " ".join(
        base64.b64decode(v).decode() for secret in out.of_kind("Secret") for v in secret.get("data", {}).values()
    )
    for secret in secrets:
        assert secret in stored, f"{secret} is not in any Secret"
    for obj in out.objects:
        if obj["kind"] == "Secret":
            continue
        text = json.dumps(obj)
        leaked = [s for s in secrets if s in text]
        assert leaked == [], f"{obj['kind']} {obj['metadata']['name']} holds {leaked}"
    for config_map in out.of_kind("ConfigMap"):
        for key, value in config_map.get("data", {}).items():
            assert "@" not in value or not key.endswith("_URL"), f"credentials in {config_map['metadata']['name']}"


def test_existing_secrets_are_referenced_not_copied() -> None:
    out = render_set("external-secrets")
    assert out.find("Secret", "linkpulse") is None  # everything comes from the user's Secrets
    admin = next(c for _, c in out.linkpulse_containers() if c["name"] == "admin")
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in admin["env"] if "valueFrom" in e}
    assert refs == {
        "LINKPULSE_ADMIN_KEY": {"name": "lp-admin", "key": "key"},
        "LINKPULSE_DATABASE_URL": {"name": "lp-database", "key": "dsn"},
        "LINKPULSE_NATS_URL": {"name": "lp-nats", "key": "url"},
        "LINKPULSE_REDIS_URL": {"name": "lp-redis", "key": "url"},
    }
    migrate = out.get("Job", "linkpulse-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert migrate["env"] == [
        {"name": "LINKPULSE_DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "lp-database", "key": "dsn"}}}
    ]
    assert out.find("Secret", "linkpulse-setup") is None


def test_plain_external_urls_stay_in_config_maps_and_the_dsn_in_the_secret() -> None:
    out = render_set("external-plain")
    redirect = out.get("ConfigMap", "linkpulse-redirect")["data"]
    assert redirect["LINKPULSE_NATS_URL"] == "nats://nats.messaging.svc:4222"
    assert redirect["LINKPULSE_REDIS_URL"] == "redis://redis.cache.svc:6379/0"
    assert "LINKPULSE_DATABASE_URL" not in redirect
    assert out.secret_value("linkpulse", "database-url").startswith("postgresql://linkpulse:dbPassword")


def test_admin_public_url_and_own_hosts_follow_the_ingress() -> None:
    admin = render_set("everything").get("ConfigMap", "linkpulse-admin")["data"]
    assert admin["LINKPULSE_ADMIN_PUBLIC_URL"] == "https://sho.rt"
    assert admin["LINKPULSE_ADMIN_OWN_HOSTS"].split(",") == ["sho.rt", "admin.sho.rt", "l.example.net"]
    assert render_set("defaults").get("ConfigMap", "linkpulse-admin")["data"]["LINKPULSE_ADMIN_PUBLIC_URL"] == (
        "http://127.0.0.1:8000"
    )
    assert render_set("external").get("ConfigMap", "linkpulse-admin")["data"]["LINKPULSE_ADMIN_PUBLIC_URL"] == (
        "https://go.example.com"
    )
    plain = render({"ingress": {"enabled": True, "admin": {"enabled": False}}})
    assert plain.get("ConfigMap", "linkpulse-admin")["data"]["LINKPULSE_ADMIN_PUBLIC_URL"] == "http://links.example.com"


def test_a_config_change_rolls_the_pods_without_hashing_passwords() -> None:
    def annotations(values: dict[str, Any]) -> dict[str, str]:
        deployment = render(values).get("Deployment", "linkpulse-redirect")
        return deployment["spec"]["template"]["metadata"]["annotations"]

    assert annotations({}) == annotations({})
    assert annotations({})["checksum/config"] != annotations({"redirect": {"cache": {"ttl": 60}}})["checksum/config"]

    def database(url: str) -> dict[str, Any]:
        return VALUE_SETS["external-plain"] | {"externalDatabase": {"url": url}}

    moved = annotations(database("postgresql://lp:pw1@db-2.example:5432/linkpulse"))["checksum/connections"]
    first = annotations(database("postgresql://lp:pw1@db-1.example:5432/linkpulse"))["checksum/connections"]
    new_password = annotations(database("postgresql://lp:pw2@db-1.example:5432/linkpulse"))["checksum/connections"]
    assert moved != first == new_password  # a password, even hashed, stays out of the pod template


def test_tracing_is_off_by_default_and_names_each_service(rendered: Rendered) -> None:
    for _, container in rendered.linkpulse_containers():
        env = rendered.environment(container)
        if rendered.values.get("tracing", {}).get("otlpEndpoint"):
            continue
        assert not {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER"} & set(env), container["name"]


@pytest.mark.parametrize(("container", "ratio"), [("redirect", 0.05), ("ingest", 0.5), ("admin", 1.0)])
def test_tracing_values_configure_each_services_real_tracer(
    container: str, ratio: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = render_set("everything")
    env = out.environment(next(c for _, c in out.linkpulse_containers() if c["name"] == container))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "x-api-key=fromExistingSecret"  # from the Secret, not a ConfigMap
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("OTEL_"):
            monkeypatch.setenv(name, value)
    # The SDK reads these from os.environ: build the tracer the service would build from them.
    tracing = Tracing.from_env(f"linkpulse-{container}")
    assert tracing.provider is not None and tracing.sampling == SamplingPolicy(ratio, parent_based=True)
    resource = tracing.provider.resource.attributes
    assert resource["service.name"] == f"linkpulse-{container}"
    assert resource["deployment.environment"] == "prod"
    tracing.provider.shutdown()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_the_tracing_sampler_value_gives_each_service_that_sdk_sampler(
    sampler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = render({"tracing": {"otlpEndpoint": "http://otel-collector.observability:4318", "sampler": sampler,
                              "sampleRatio": {"redirect": 0.25}}})  # fmt: skip
    env = out.environment(next(c for _, c in out.linkpulse_containers() if c["name"] == "redirect"))
    assert env["OTEL_TRACES_SAMPLER"] == sampler
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("OTEL_"):
            monkeypatch.setenv(name, value)
    tracing = Tracing.from_env("linkpulse-redirect")
    ratio = {"always_on": 1.0, "always_off": 0.0}.get(sampler.removeprefix("parentbased_"), 0.25)
    assert tracing.sampling == SamplingPolicy(ratio, parent_based=sampler.startswith("parentbased_"))
    assert tracing.provider is not None
    tracing.provider.shutdown()


def test_the_tracing_sampler_value_is_unset_by_default_and_only_an_sdk_name() -> None:
    out = render({"tracing": {"otlpEndpoint": "http://otel-collector.observability:4318"}})
    for _, container in out.linkpulse_containers():
        assert "OTEL_TRACES_SAMPLER" not in out.environment(container)
    # The schema's choices are the SDK's names as linkpulse.sampling builds them, and "" for the default.
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["tracing"]["properties"]["sampler"]["enum"] == ["", *SAMPLERS]
    with pytest.raises(Exception, match="sampler"):
        render({"tracing": {"sampler": "xray"}})
