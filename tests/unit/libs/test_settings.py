"""Settings from LINKPULSE_* variables: lenient parsing, clear errors naming the variable."""

from __future__ import annotations

import msgspec
import pytest

from linkpulse.settings import ClicksSettings, NatsSettings, SettingsError, env_names, from_env


class Example(msgspec.Struct, frozen=True, kw_only=True):
    nats: NatsSettings = NatsSettings()
    clicks: ClicksSettings = ClicksSettings()


def test_strings_are_converted_to_field_types() -> None:
    settings = from_env(Example, {"LINKPULSE_CLICKS_SHARDS": "8", "LINKPULSE_NATS_URL": "nats://h:1"})
    assert settings.clicks.shards == 8
    assert settings.nats.url == "nats://h:1"
    assert settings.clicks.max_age == ClicksSettings().max_age


def test_unrelated_variables_are_ignored() -> None:
    assert from_env(Example, {"PATH": "/bin", "LINKPULSE_OTHER_THING": "x"}) == Example()


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="LINKPULSE_CLICKS_SHARDS"):
        from_env(Example, {"LINKPULSE_CLICKS_SHARDS": "many"})


def test_env_names_lists_every_field() -> None:
    names = env_names(Example)
    assert "LINKPULSE_NATS_URL" in names
    assert "LINKPULSE_CLICKS_SHARDS" in names
    assert len(names) == len(msgspec.structs.fields(NatsSettings)) + len(msgspec.structs.fields(ClicksSettings))
