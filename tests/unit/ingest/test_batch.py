"""Turning fetched messages into rows and dead letters; messages are nats-py `Msg`s built without a server."""

from __future__ import annotations

from nats.aio.msg import Msg

from linkpulse.events import MAX_LANG, MAX_REFERRER, MAX_UA, ClickBatch, ClickEvent, encode
from linkpulse.ids import new_event_id
from linkpulse.ingest.batch import MAX_TS, MIN_TS, ClickRow, prepare

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)


def delivered(data: bytes, *, stream_seq: int, deliveries: int = 1, msg_id: str = "m-1") -> Msg:
    """A message as a pull consumer hands it over: the ack reply subject carries its metadata."""
    reply = f"$JS.ACK.CLICKS.ingest-2.{deliveries}.{stream_seq}.{stream_seq}.1700000000000000000.0"
    return Msg(_client=None, subject="clicks.2", reply=reply, data=data, headers={"Nats-Msg-Id": msg_id})  # type: ignore[arg-type]


def test_envelope_becomes_enriched_rows_with_the_event_time() -> None:
    event = ClickEvent(
        id=new_event_id(),
        code="abc",
        link_id=7,
        ts=1_700_000_000_123,
        ip="203.0.113.0",
        ua=IPHONE,
        referrer="https://www.example.com/page",
        lang="de-DE",
        country="de",
        visitor="0f" * 16,
    )
    batch = prepare([delivered(encode(ClickBatch(id=new_event_id(), events=[event])), stream_seq=5)])

    assert batch.dead_letters == []
    assert batch.rows == [
        ClickRow(
            id=event.id,
            # The event's own milliseconds, exactly: (id, ts) is the dedupe key.
            ts=1_700_000_000_123,
            link_id=7,
            code="abc",
            ip="203.0.113.0",
            ua=IPHONE,
            referrer="https://www.example.com/page",
            referrer_host="example.com",
            lang="de-DE",
            country="DE",
            region="",
            city="",
            asn="",
            browser="Mobile Safari",
            os="iOS",
            device="mobile",
            is_bot=False,
            visitor="0f" * 16,
        )
    ]


def test_garbage_becomes_a_dead_letter_with_its_raw_bytes() -> None:
    good = encode(ClickBatch(id="e1", events=[ClickEvent(id=new_event_id(), code="a", link_id=1, ts=1)]))
    batch = prepare(
        [
            delivered(b"\xff not json", stream_seq=10, deliveries=3, msg_id="bad"),
            delivered(good, stream_seq=11, msg_id="good"),
        ]
    )

    assert len(batch.rows) == 1
    [dead] = batch.dead_letters
    assert (dead.stream, dead.subject, dead.stream_seq, dead.msg_id, dead.deliveries, dead.payload) == (
        "CLICKS",
        "clicks.2",
        10,
        "bad",
        3,
        b"\xff not json",
    )
    assert dead.error.startswith("DecodeError")
    # Both messages stay in the batch: both are acked after the commit.
    assert [item.msg.metadata.sequence.stream for item in batch.items] == [10, 11]


def test_envelope_with_an_unstorable_event_is_dead_lettered_whole() -> None:
    # A non-UUID id and an out-of-range link id would fail the insert; the envelope is kept instead.
    for event in (
        ClickEvent(id="not-a-uuid", code="a", link_id=1, ts=1),
        ClickEvent(id=new_event_id(), code="a", link_id=2**63, ts=1),
        ClickEvent(id=new_event_id(), code="a", link_id=1, ts=10**18),
        # Just outside what ingest stores (years 1 to 9999, as ever); the ends themselves are stored.
        ClickEvent(id=new_event_id(), code="a", link_id=1, ts=MAX_TS + 1),
        ClickEvent(id=new_event_id(), code="a", link_id=1, ts=MIN_TS - 1),
    ):
        payload = encode(ClickBatch(id="e", events=[ClickEvent(id=new_event_id(), code="a", link_id=1, ts=1), event]))
        batch = prepare([delivered(payload, stream_seq=1)])
        assert batch.rows == []
        assert [d.payload for d in batch.dead_letters] == [payload]


def test_text_with_nul_is_cleaned() -> None:
    event = ClickEvent(id=new_event_id(), code="a", link_id=1, ts=1, ua="cur\x00l/8.0", referrer="x\x00")
    [row] = prepare([delivered(encode(ClickBatch(id="e", events=[event])), stream_seq=1)]).rows
    assert (row.ua, row.referrer, row.is_bot) == ("curl/8.0", "x", True)


def test_oversized_visitor_text_is_cut_to_the_click_limits_the_redirect_applies() -> None:
    # Whatever reaches ingest (an older redirect, a replay) is held to the same documented sizes.
    event = ClickEvent(
        id=new_event_id(), code="a", link_id=1, ts=1, ua="U" * 5000, referrer="https://a.example/" + "r" * 5000,
        lang="l" * 500,
    )  # fmt: skip
    [row] = prepare([delivered(encode(ClickBatch(id="e", events=[event])), stream_seq=1)]).rows
    assert (len(row.ua), len(row.referrer), len(row.lang)) == (MAX_UA, MAX_REFERRER, MAX_LANG) == (512, 1024, 35)
