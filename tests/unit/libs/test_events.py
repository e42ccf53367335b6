"""Event schemas: round trips, stored payloads of every past version, and rejects."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkpulse.events import (
    CLICK_EVENT_VERSION,
    ClickBatch,
    ClickEvent,
    DecodeError,
    LinkChanged,
    decode_click_batch,
    decode_link_changed,
    encode,
)
from linkpulse.ids import new_event_id, shard_for

DATA = Path(__file__).parents[2] / "data" / "events"


def test_click_batch_round_trip() -> None:
    event = ClickEvent(id=new_event_id(), code="abc", link_id=7, ts=1_700_000_000_000, ua="x", country="DE")
    batch = ClickBatch(id=new_event_id(), events=[event])
    assert decode_click_batch(encode(batch)) == batch


@pytest.mark.parametrize("path", sorted(DATA.glob("click_batch_v*.json")), ids=lambda p: p.name)
def test_every_stored_click_batch_version_decodes(path: Path) -> None:
    batch = decode_click_batch(path.read_bytes())
    assert batch.events and all(e.v == CLICK_EVENT_VERSION for e in batch.events)


def test_a_v1_click_decodes_without_a_visitor_key() -> None:
    # v1 had no visitor field: one it carries anyway is dropped by the upcaster, not trusted.
    raw = (DATA / "click_batch_v1.json").read_bytes().replace(b'"v":1,"code"', b'"v":1,"visitor":"ab","code"')
    (event,) = decode_click_batch(raw).events
    assert (event.v, event.visitor) == (CLICK_EVENT_VERSION, "")


def test_a_v2_click_keeps_its_visitor_key() -> None:
    (event,) = decode_click_batch((DATA / "click_batch_v1_event_v2.json").read_bytes()).events
    assert event.visitor == "5f0e3c6a9b1d4e2f8a7c6b5d4e3f2a1b"


@pytest.mark.parametrize("path", sorted(DATA.glob("link_changed_v*.json")), ids=lambda p: p.name)
def test_every_stored_link_changed_version_decodes(path: Path) -> None:
    assert decode_link_changed(path.read_bytes()).op in ("created", "updated", "deleted")


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"{}", b'{"id": "x", "events": [{"id": 1}]}', b'{"id":"x","v":99,"events":[]}',
     b'{"id":"x","events":[{"id":"e","code":"c","link_id":1,"ts":1,"v":7}]}'],
)  # fmt: skip
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_click_batch(payload)


def test_link_changed_round_trip() -> None:
    event = LinkChanged(id=new_event_id(), code="abc", op="updated", version=3, ts=1)
    assert decode_link_changed(encode(event)) == event


def test_shard_is_stable_and_in_range() -> None:
    # Fixed expectations: a change of hash function would move codes between shards.
    assert [shard_for(c, 16) for c in ("abc", "hello", "Z9")] == [shard_for(c, 16) for c in ("abc", "hello", "Z9")]
    assert shard_for("abc", 16) == 2
    assert all(0 <= shard_for(f"c{i}", 16) < 16 for i in range(1000))
    assert len({shard_for(f"c{i}", 16) for i in range(1000)}) == 16
