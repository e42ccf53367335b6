"""The admin service with a crash between commit and publish: `python tests/e2e/admin_exit_after_commit.py`.

It runs the admin's own `main`, with one change: a link create, update or delete exits the process (status
70, EX_SOFTWARE, so a test tells it from a real crash) right after its transaction commits, before Redis
and NATS hear of it. tests/e2e/test_invalidation.py uses it to prove such a change still reaches every redirect.
Run with one HTTP worker (the default): spawned workers would import the service unpatched.
"""

from __future__ import annotations

import os
import sys

import structlog

from linkpulse.admin.__main__ import main
from linkpulse.admin.links.service import LinkService
from linkpulse.events import LinkChanged

__all__ = ["EXIT_STATUS"]

EXIT_STATUS = 70

log = structlog.get_logger(__name__)


async def _exit_after_commit(self: LinkService, record: object, event: LinkChanged) -> None:
    """In place of `LinkService._after_commit`, its first step: die as a crash would."""
    log.warning("fault.exit_after_commit", code=event.code, event_id=event.id, status=EXIT_STATUS)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_STATUS)


if __name__ == "__main__":
    # A renamed method must fail here, not leave a process that never crashes.
    assert callable(getattr(LinkService, "_after_commit", None)), "LinkService._after_commit is gone"
    LinkService._after_commit = _exit_after_commit  # type: ignore[method-assign]
    main()
