"""Admin settings from the environment: defaults, the port, own hosts, and no key in a repr."""

from __future__ import annotations

import pytest

from linkpulse.admin.settings import AdminSettings
from linkpulse.settings import HttpSettings, SettingsError, env_names
from linkpulse.validation import InvalidInput


def test_defaults() -> None:
    settings = AdminSettings.from_env({})
    assert settings.http.port == 8001
    assert isinstance(settings.http, HttpSettings)
    assert settings.admin.key == ""
    assert settings.admin.max_body_bytes == 1_048_576
    assert settings.admin.hosts() == {"127.0.0.1"}


def test_setting_another_http_variable_keeps_the_admin_port() -> None:
    settings = AdminSettings.from_env({"LINKPULSE_HTTP_HOST": "0.0.0.0"})
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 8001)


def test_admin_variables_are_read() -> None:
    settings = AdminSettings.from_env(
        {
            "LINKPULSE_ADMIN_KEY": "lp_secret",
            "LINKPULSE_ADMIN_PUBLIC_URL": "https://Lp.Example.com/",
            "LINKPULSE_ADMIN_OWN_HOSTS": " go.example.com ,, bücher.example ",
            "LINKPULSE_ADMIN_MAX_BODY_BYTES": "2048",
            "LINKPULSE_HTTP_PORT": "9001",
        }
    )
    assert settings.admin.key == "lp_secret"
    assert settings.admin.max_body_bytes == 2048
    assert settings.http.port == 9001
    assert settings.admin.hosts() == {"lp.example.com", "go.example.com", "xn--bcher-kva.example"}
    assert settings.admin.short_url("abc") == "https://Lp.Example.com/abc"


def test_relay_settings() -> None:
    assert AdminSettings.from_env({}).admin.relay_interval == 1.0
    assert AdminSettings.from_env({"LINKPULSE_ADMIN_RELAY_INTERVAL": "0.25"}).admin.relay_interval == 0.25
    with pytest.raises(SettingsError, match="LINKPULSE_ADMIN_RELAY_INTERVAL"):
        AdminSettings.from_env({"LINKPULSE_ADMIN_RELAY_INTERVAL": "0"})


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="LINKPULSE_ADMIN_MAX_BODY_BYTES"):
        AdminSettings.from_env({"LINKPULSE_ADMIN_MAX_BODY_BYTES": "lots"})


def test_the_key_is_not_in_the_repr() -> None:
    settings = AdminSettings.from_env({"LINKPULSE_ADMIN_KEY": "lp_do-not-print-me"})
    assert "lp_do-not-print-me" not in repr(settings)
    assert "***" in repr(settings.admin)


def test_env_names_cover_every_group() -> None:
    names = env_names(AdminSettings)
    for name in ("LINKPULSE_HTTP_PORT", "LINKPULSE_NATS_URL", "LINKPULSE_REDIS_TTL", "LINKPULSE_DATABASE_URL"):
        assert name in names
    assert {n for n in names if n.startswith("LINKPULSE_ADMIN_")} == {
        "LINKPULSE_ADMIN_KEY",
        "LINKPULSE_ADMIN_PUBLIC_URL",
        "LINKPULSE_ADMIN_OWN_HOSTS",
        "LINKPULSE_ADMIN_ALLOW_PRIVATE_TARGETS",
        "LINKPULSE_ADMIN_MAX_BODY_BYTES",
        "LINKPULSE_ADMIN_RELAY_INTERVAL",
        "LINKPULSE_ADMIN_AUTH_FAILURES",
        "LINKPULSE_ADMIN_AUTH_FAILURE_WINDOW",
        "LINKPULSE_ADMIN_BULK_CONCURRENCY",
        "LINKPULSE_ADMIN_EXPORT_CONCURRENCY",
        "LINKPULSE_ADMIN_EXPORT_SEND_TIMEOUT",
    }
    assert "LINKPULSE_PROXY_TRUSTED" in names


def test_own_hosts_are_canonical_as_targets_are() -> None:
    # The same normalisation as validate_url's: IDNA 2008 (not fass.de) and numeric IPv4 forms.
    options = AdminSettings.from_env(
        {"LINKPULSE_ADMIN_PUBLIC_URL": "https://[0:0::1]:8000", "LINKPULSE_ADMIN_OWN_HOSTS": "Faß.de, 0x7f.1"}
    ).admin
    assert options.hosts() == {"::1", "xn--fa-hia.de", "127.0.0.1"}
    with pytest.raises(InvalidInput, match="loop"):
        options.validate_target("https://xn--fa-hia.de/x")


def test_private_targets_are_refused_unless_the_install_allows_them() -> None:
    assert AdminSettings.from_env({}).admin.allow_private_targets is False
    with pytest.raises(InvalidInput, match=r"10\.0\.0\.1 is a private address"):
        AdminSettings.from_env({}).admin.validate_target("http://10.0.0.1/wiki")
    intranet = AdminSettings.from_env({"LINKPULSE_ADMIN_ALLOW_PRIVATE_TARGETS": "true"}).admin
    assert intranet.validate_target("http://10.0.0.1/wiki") == "http://10.0.0.1/wiki"
    assert "allow_private_targets=True" in repr(intranet)
    # The short links' own host still loops, private or not.
    with pytest.raises(InvalidInput, match="loop"):
        intranet.validate_target("http://2130706433:8000/abc")
