"""`messaging.link_events`: a LinkChanged goes out under its code's subject, its id as Nats-Msg-Id, its trace along."""

from __future__ import annotations

from typing import Any

from linkpulse.events import LinkChanged, encode
from linkpulse.messaging.link_events import publish_link_changed, publish_stored_link_changed

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class RecordingJetStream:
    """Takes each publish as JetStream would be asked it, and acks nothing (the tests read the calls)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, dict[str, Any]]] = []

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> None:
        self.calls.append((subject, payload, kwargs))


async def test_a_change_goes_out_encoded_under_its_code_with_its_id_and_trace() -> None:
    js = RecordingJetStream()
    event = LinkChanged(id="e1", code="abc", op="updated", version=2, ts=1, traceparent=TRACEPARENT)
    await publish_link_changed(js, event, timeout=1.5)  # type: ignore[arg-type]
    assert js.calls == [
        ("links.abc", encode(event), {"timeout": 1.5, "headers": {"Nats-Msg-Id": "e1", "traceparent": TRACEPARENT}})
    ]


async def test_a_stored_row_goes_out_byte_for_byte_with_the_trace_it_carries() -> None:
    js = RecordingJetStream()
    stored = encode(LinkChanged(id="e2", code="abc", op="created", version=1, ts=1, traceparent=TRACEPARENT))
    await publish_stored_link_changed(js, "abc", stored, "e2", timeout=2.0)  # type: ignore[arg-type]
    assert js.calls == [
        ("links.abc", stored, {"timeout": 2.0, "headers": {"Nats-Msg-Id": "e2", "traceparent": TRACEPARENT}})
    ]


async def test_a_stored_row_that_does_not_decode_still_goes_out_without_a_trace() -> None:
    js = RecordingJetStream()
    await publish_stored_link_changed(js, "abc", b"not json", "e3", timeout=2.0)  # type: ignore[arg-type]
    assert js.calls == [("links.abc", b"not json", {"timeout": 2.0, "headers": {"Nats-Msg-Id": "e3"}})]
