"""GeoIP in ingest: one mounted source of .mmdb files sets LINKPULSE_GEOIP_*; the same cases as geoip_test.yaml."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest
from tests.chart.conftest import Rendered, render

from linkpulse.ingest.settings import GeoipSettings, IngestSettings
from linkpulse.settings import from_env

GEOIP_DIR = "/etc/linkpulse/geoip"


def ingest(out: Rendered) -> tuple[dict[str, Any], dict[str, str]]:
    """The ingest pod spec and its container's resolved environment."""
    pod = out.get("Deployment", "linkpulse-ingest")["spec"]["template"]["spec"]
    return pod, out.environment(pod["containers"][0])


def test_nothing_is_mounted_and_no_geoip_variable_set_by_default(rendered: Rendered) -> None:
    pod, env = ingest(rendered)
    assert not any(name.startswith("LINKPULSE_GEOIP_") for name in env)
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert from_env(IngestSettings, env).geoip == GeoipSettings()


def test_an_existing_claim_is_mounted_read_only_as_a_directory() -> None:
    pod, env = ingest(render({"ingest": {"geoip": {"existingClaim": "geoip"}}}))
    assert {"name": "geoip", "persistentVolumeClaim": {"claimName": "geoip", "readOnly": True}} in pod["volumes"]
    # A directory, never a subPath: a new version of the files then reaches the running pod.
    assert {"name": "geoip", "mountPath": GEOIP_DIR, "readOnly": True} in pod["containers"][0]["volumeMounts"]
    settings = from_env(IngestSettings, env).geoip
    assert settings == GeoipSettings(database=f"{GEOIP_DIR}/GeoLite2-City.mmdb")


def test_a_config_map_with_file_names_an_asn_database_and_the_check_interval() -> None:
    values = {"configMap": "geoip-files", "database": "dbip-country-lite.mmdb", "asnDatabase": "GeoLite2-ASN.mmdb",
              "checkInterval": 30}  # fmt: skip
    pod, env = ingest(render({"ingest": {"geoip": values}}))
    assert {"name": "geoip", "configMap": {"name": "geoip-files"}} in pod["volumes"]
    assert from_env(IngestSettings, env).geoip == GeoipSettings(
        database=f"{GEOIP_DIR}/dbip-country-lite.mmdb", asn_database=f"{GEOIP_DIR}/GeoLite2-ASN.mmdb", check_interval=30
    )


def test_a_secret() -> None:
    pod, _ = ingest(render({"ingest": {"geoip": {"secret": "geoip-files"}}}))
    assert {"name": "geoip", "secret": {"secretName": "geoip-files"}} in pod["volumes"]


def test_two_sources_at_once_are_refused() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"ingest\.geoip: give one of existingClaim"):
        render({"ingest": {"geoip": {"existingClaim": "geoip", "secret": "geoip-files"}}})


def test_a_file_name_that_is_a_path_is_refused() -> None:
    with pytest.raises((helm_python.HelmRenderError, helm_python.HelmValuesError), match=r"geoip[./]database"):
        render({"ingest": {"geoip": {"existingClaim": "geoip", "database": "../../etc/passwd"}}})
