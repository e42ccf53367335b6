"""Ingest settings: the consumers' ack wait comes from the shared clicks settings."""

from __future__ import annotations

from linkpulse.ingest.settings import IngestSettings
from linkpulse.messaging.streams import INGEST_ACK_WAIT, ingest_consumer


def test_ack_wait_is_a_setting_applied_to_the_ingest_consumers() -> None:
    settings = IngestSettings.from_env({"LINKPULSE_CLICKS_ACK_WAIT": "5"})
    assert settings.clicks.ack_wait == 5.0
    assert ingest_consumer(3, settings.clicks.ack_wait).ack_wait == 5.0
    assert ingest_consumer(3).ack_wait == INGEST_ACK_WAIT == IngestSettings.from_env({}).clicks.ack_wait == 60.0
