"""What a progress report writes for what the shard loops saw: pending as seen, behind only while behind."""

from __future__ import annotations

from linkpulse.ingest.progress import Observation, progress_rows


def test_behind_is_the_age_of_the_last_stored_message_while_more_wait() -> None:
    seen = {3: Observation(pending=120, published=1_000.0), 0: Observation(pending=0, published=None)}
    assert progress_rows(seen, now=1_004.5) == ([0, 3], [0, 120], [0.0, 4.5])


def test_a_consumer_that_caught_up_is_behind_by_nothing_however_old_its_last_message() -> None:
    assert progress_rows({1: Observation(pending=0, published=10.0)}, now=1_000.0) == ([1], [0], [0.0])


def test_a_publish_time_ahead_of_this_clock_counts_as_not_behind() -> None:
    # The stream's clock and ingest's may disagree by a little; the table refuses a negative figure.
    assert progress_rows({2: Observation(pending=5, published=1_001.0)}, now=1_000.0) == ([2], [5], [0.0])
