"""The hot objects every door uses (`RedirectCore`), built by the lifespan and found with `core_of(app)`.

The lifespan (`resources.redirect_core`) builds one core per run of the app and keeps it on the app with
`keep_core`; the three doors (`inline_door`, `asgi_door`, `litestar_door`) read it with `core_of`, the
one accessor, and hold nothing else of the app. A core holds what a request needs in plain slots: a
Litestar `State` attribute costs about 0.35 µs a read (a normal lookup fails and raises AttributeError
before `State.__getattr__` finds the key), a slot some 10 ns.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from linkpulse.redirect.clicks import RawHeaders
from linkpulse.redirect.decision import Redirect, code_of, decide
from linkpulse.web.server_spans import sampling_decision

if TYPE_CHECKING:
    from litestar import Litestar

    from linkpulse.redirect.budget import ClickBudget
    from linkpulse.redirect.clicks import ClickMaker
    from linkpulse.redirect.lookup import LinkLookup
    from linkpulse.redirect.publisher import ClickPublisher
    from linkpulse.sampling import SamplingPolicy

__all__ = ["FOUND_KEY", "NOT_LOOKED", "ROUTE", "RedirectCore", "core_of", "keep_core"]

ROUTE = "/{code}"
"""The route template every answer to a code is counted under, as Litestar's router names the route."""
FOUND_KEY = "linkpulse.found"
"""Scope key a hot door sets when it declines a request it looked up: what the process cache held
(a record, None, or `cache.MISS`, or NOT_LOOKED). Later doors neither decide it as hot again nor look it up
in the cache again: `litestar_door` goes on from what the key holds."""
NOT_LOOKED = object()
"""Under FOUND_KEY: declined without a look at the cache (not a code, or drawn for tracing)."""
_STATE_KEY = "redirect_core"


class RedirectCore:
    """The lookup chain, click budget, publisher and click maker of one app run, and the hot answer."""

    __slots__ = ("budget", "clicks", "lookup", "publisher", "trace_policy", "traced")

    def __init__(
        self,
        lookup: LinkLookup,
        budget: ClickBudget,
        publisher: ClickPublisher,
        clicks: ClickMaker,
        trace_policy: SamplingPolicy | None,
    ) -> None:
        self.lookup = lookup
        self.budget = budget
        self.publisher = publisher
        self.clicks = clicks
        self.traced = clicks.tracing is not None
        """Tracing is on."""
        self.trace_policy = trace_policy
        """The sampler's policy; None, with tracing on, when the sampler was built elsewhere (it decides alone)."""

    def sampling(self, headers: Iterable[tuple[bytes, bytes]]) -> bool | None:
        """The request's tracing decision (`sampling_decision`); None, not traced, whenever tracing is off.

        A hot door draws it once, before `answer`, and leaves it in the scope under SAMPLING_KEY for the
        tracing gate: a request not drawn (nearly all, at the default ratio) is answered with no span at
        all, so sampling costs a hot answer one `random()`; one drawn takes the Litestar door, which traces it.
        """
        return sampling_decision(headers, self.trace_policy) if self.traced else None

    def answer(
        self, is_get: bool, path: str, query: bytes, peer: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> Redirect | object:
        """The `Redirect` of a hot request (its click queued if a GET), else what the cache held for FOUND_KEY.

        Hot: a GET or HEAD of a code the process cache holds, live and without a click limit. Only for a
        request `sampling` did not draw for tracing: its click then carries no traceparent.

        Args:
            is_get: GET (records a click) rather than HEAD; other methods never reach here.
            path: the decoded request path, `/code`.
            query: the raw query string.
            peer: the direct peer's address.
            headers: the raw request headers (lowercase names, as ASGI and uvicorn hold them).
        """
        code = code_of(path)
        if code is None:
            return NOT_LOOKED
        lookup = self.lookup
        found = lookup.cache.get(code)
        now_ms = time.time_ns() // 1_000_000
        decision = decide(found, now_ms, query, is_get)
        if decision.__class__ is not Redirect:
            return found
        lookup.count_local_hit()
        if is_get:
            self.publisher.submit(self.clicks.make(code, found.id, now_ms, peer, RawHeaders(headers).get))  # type: ignore[attr-defined]
        return decision


def keep_core(app: Litestar, core: RedirectCore | None) -> None:
    """Make `core` the one `core_of(app)` returns (the lifespan, at start; None at its end)."""
    app.state[_STATE_KEY] = core


def core_of(app: Litestar) -> RedirectCore | None:
    """The core of `app`'s running lifespan; None before it starts, after it ends, or for another app."""
    state = getattr(app, "state", None)
    return None if state is None else state.get(_STATE_KEY)
