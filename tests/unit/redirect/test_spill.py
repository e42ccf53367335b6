"""The spill file and the publisher's outage handling, with a fake JetStream (no servers)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from nats.errors import OutboundBufferLimitError

from linkpulse.events import ClickBatch, ClickEvent, decode_click_batch, encode
from linkpulse.ids import new_event_id
from linkpulse.redirect.publisher import ClickPublisher
from linkpulse.redirect.settings import PublisherSettings
from linkpulse.redirect.spill import SpillFile

SHARDS = 4


def click(code: str = "abc") -> ClickEvent:
    return ClickEvent(id=new_event_id(), code=code, link_id=1, ts=int(time.time() * 1000))


def batch(*events: ClickEvent) -> ClickBatch:
    return ClickBatch(id=new_event_id(), events=list(events))


class FakeJetStream:
    """Records acked publishes; `mode` decides what the next publish does."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | timeout | buffer_full
        self.acked: list[tuple[str, str, ClickBatch]] = []  # (subject, Nats-Msg-Id, envelope)
        self.attempts = 0
        self.delay = 0.0

    async def publish(self, subject: str, payload: bytes, timeout: float, headers: dict[str, str]) -> Any:
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "timeout":
            await asyncio.sleep(timeout)
            raise TimeoutError
        if self.mode == "buffer_full":
            raise OutboundBufferLimitError
        self.acked.append((subject, headers["Nats-Msg-Id"], decode_click_batch(payload)))
        return None

    def event_ids(self) -> Counter[str]:
        return Counter(e.id for _, _, env in self.acked for e in env.events)


class FakeClient:
    def __init__(self, js: FakeJetStream, connected: bool = True) -> None:
        self.js = js
        self.is_connected = connected

    def jetstream(self) -> FakeJetStream:
        return self.js


def settings(**overrides: Any) -> PublisherSettings:
    base: dict[str, Any] = {"linger": 0.001, "give_up_after": 0.5, "publish_timeout": 0.1, "drain_timeout": 1.0}
    base.update(overrides)
    return PublisherSettings(**base)


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# -- SpillFile ------------------------------------------------------------------------------------


def test_segments_are_replayable_once_closed(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path)
    first, second = batch(click()), batch(click(), click())
    spill.append(first)
    spill.append(second)
    spill.sync()
    assert spill.pending_segments() == []  # the active segment is not replayed while written
    assert spill.size_bytes() == len(encode(first)) + len(encode(second)) + 2
    spill.close()
    [segment] = spill.pending_segments()
    with spill.claim(segment) as envelopes:
        assert envelopes == [first, second]
    spill.done(segment)
    assert spill.size_bytes() == 0 and spill.pending_segments() == []


def test_a_segment_another_writer_holds_is_not_claimed(tmp_path: Path) -> None:
    writer, replayer = SpillFile(tmp_path), SpillFile(tmp_path)
    writer.append(batch(click()))
    [segment] = replayer.pending_segments()
    with replayer.claim(segment) as envelopes:
        assert envelopes is None  # still being written: flock held
    writer.close()
    with replayer.claim(segment) as envelopes:
        assert envelopes is not None and len(envelopes) == 1


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    good = batch(click())
    (tmp_path / "spill-00000000000000000001-1.jsonl").write_bytes(encode(good) + b"\n" + encode(good)[:20])
    spill = SpillFile(tmp_path)
    [segment] = spill.pending_segments()
    with spill.claim(segment) as envelopes:
        assert envelopes == [good]


# -- ClickPublisher under outages --------------------------------------------------------------


async def test_without_a_connection_clicks_wait_then_spill_then_replay_once_connected(tmp_path: Path) -> None:
    js = FakeJetStream()
    publisher = ClickPublisher(settings(give_up_after=0.3), SHARDS, SpillFile(tmp_path))
    publisher.start()
    events = [click(f"c{i}") for i in range(50)]
    for event in events:
        publisher.submit(event)
    await asyncio.sleep(0.1)
    assert publisher.queued == 50 and SpillFile(tmp_path).size_bytes() == 0  # a short outage costs no disk
    await until(lambda: publisher.queued == 0)  # past give_up_after: on disk
    assert SpillFile(tmp_path).size_bytes() > 0 and js.attempts == 0  # nats-py's buffer never fed
    publisher.attach(FakeClient(js))  # type: ignore[arg-type]
    await until(lambda: SpillFile(tmp_path).size_bytes() == 0)
    assert js.event_ids() == Counter(e.id for e in events)
    await publisher.close()


async def test_outbound_buffer_full_spills_at_once(tmp_path: Path) -> None:
    js = FakeJetStream()
    js.mode = "buffer_full"
    publisher = ClickPublisher(settings(give_up_after=30), SHARDS, SpillFile(tmp_path))
    publisher.attach(FakeClient(js))  # type: ignore[arg-type]
    publisher.start()
    publisher.submit(click())
    started = time.monotonic()
    await until(lambda: SpillFile(tmp_path).size_bytes() > 0, timeout=2)
    assert time.monotonic() - started < 1.0  # not after give_up_after (30 s), not a retry loop
    assert js.attempts == 1
    js.mode = "ok"
    publisher.request_replay()
    await until(lambda: SpillFile(tmp_path).size_bytes() == 0)
    assert len(js.acked) == 1
    await publisher.close()


async def test_failed_publishes_retry_with_the_same_id_then_spill_and_replay_with_it(tmp_path: Path) -> None:
    js = FakeJetStream()
    js.mode = "timeout"
    publisher = ClickPublisher(settings(give_up_after=0.6), SHARDS, SpillFile(tmp_path))
    publisher.attach(FakeClient(js))  # type: ignore[arg-type]
    publisher.start()
    event = click()
    publisher.submit(event)
    await until(lambda: SpillFile(tmp_path).size_bytes() > 0)
    assert js.attempts >= 2
    spill = SpillFile(tmp_path)
    publisher._spill.close()  # the test reads the segment the publisher wrote
    [segment] = spill.pending_segments()
    with spill.claim(segment) as envelopes:
        assert envelopes is not None
        [spilled] = envelopes
    js.mode = "ok"
    publisher.request_replay()
    await until(lambda: SpillFile(tmp_path).size_bytes() == 0)
    assert [(msg_id, [e.id for e in env.events]) for _, msg_id, env in js.acked] == [(spilled.id, [event.id])]
    await publisher.close()


async def test_a_full_queue_spills_from_the_request_path(tmp_path: Path) -> None:
    publisher = ClickPublisher(settings(queue_max=10, give_up_after=60), SHARDS, SpillFile(tmp_path))
    publisher.start()
    for i in range(25):
        publisher.submit(click(f"q{i}"))
    assert publisher.queued == 10
    assert SpillFile(tmp_path).size_bytes() > 0  # written (not yet fsynced) before submit returned
    await publisher.close()


async def test_close_without_nats_spills_everything_and_the_next_start_publishes_it(tmp_path: Path) -> None:
    publisher = ClickPublisher(settings(give_up_after=60, drain_timeout=0.5), SHARDS, SpillFile(tmp_path))
    publisher.start()
    events = [click(f"d{i}") for i in range(40)]
    for event in events:
        publisher.submit(event)
    started = time.monotonic()
    await publisher.close()
    assert time.monotonic() - started < 1.5  # bounded by the drain timeout
    assert SpillFile(tmp_path).size_bytes() > 0
    js = FakeJetStream()
    nxt = ClickPublisher(settings(), SHARDS, SpillFile(tmp_path))
    nxt.attach(FakeClient(js))  # type: ignore[arg-type]
    nxt.start()
    await until(lambda: SpillFile(tmp_path).size_bytes() == 0)
    assert js.event_ids() == Counter(e.id for e in events)
    await nxt.close()


async def test_close_drains_the_queue_into_nats(tmp_path: Path) -> None:
    js = FakeJetStream()
    publisher = ClickPublisher(settings(linger=5.0), SHARDS, SpillFile(tmp_path))
    publisher.attach(FakeClient(js))  # type: ignore[arg-type]
    publisher.start()
    events = [click(f"e{i}") for i in range(30)]
    for event in events:
        publisher.submit(event)
    started = time.monotonic()
    await publisher.close()
    assert time.monotonic() - started < 1.0  # the linger does not hold shutdown
    assert js.event_ids() == Counter(e.id for e in events)
    assert SpillFile(tmp_path).size_bytes() == 0


async def test_replay_runs_beside_live_publishing(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path)
    for i in range(2000):
        spill.append(batch(click(f"r{i}")))
    spill.close()
    js = FakeJetStream()
    js.delay = 0.002  # each ack takes a little while: replaying 2000 envelopes one by one would take 4 s
    publisher = ClickPublisher(settings(replay_concurrency=64), SHARDS, SpillFile(tmp_path))
    publisher.attach(FakeClient(js))  # type: ignore[arg-type]
    publisher.start()
    await asyncio.sleep(0.05)
    live = click("live")
    publisher.submit(live)
    started = time.monotonic()
    await until(lambda: live.id in js.event_ids())
    assert time.monotonic() - started < 0.5, "a new click waited for the replay"
    await until(lambda: SpillFile(tmp_path).size_bytes() == 0)
    assert len(js.event_ids()) == 2001 and max(js.event_ids().values()) == 1
    await publisher.close()


@pytest.mark.parametrize("connected", [True, False])
async def test_connected_follows_the_client(tmp_path: Path, connected: bool) -> None:
    publisher = ClickPublisher(settings(), SHARDS, SpillFile(tmp_path))
    assert not publisher.connected
    publisher.attach(FakeClient(FakeJetStream(), connected))  # type: ignore[arg-type]
    assert publisher.connected is connected


async def test_clicks_spilled_while_connected_are_replayed_without_a_reconnect(tmp_path: Path) -> None:
    js = FakeJetStream()
    publisher = ClickPublisher(settings(queue_max=5), SHARDS, SpillFile(tmp_path))
    publisher.attach(FakeClient(js))  # type: ignore[arg-type]
    publisher.start()
    await asyncio.sleep(0.05)  # the replay asked for at start has run: nothing left to ask for one
    events = [click(f"o{i}") for i in range(40)]
    for event in events:  # the queue overflows into the spill file while NATS is fine
        publisher.submit(event)
    assert SpillFile(tmp_path).size_bytes() > 0
    await until(lambda: SpillFile(tmp_path).size_bytes() == 0, timeout=5)
    assert js.event_ids() == Counter(e.id for e in events)
    await publisher.close()
