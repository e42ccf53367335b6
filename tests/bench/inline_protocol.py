"""Micro-benchmark: the cost of one hot redirect answered inline by `RedirectProtocol`, in process.

Not a test (nothing asserts a time or a count): run it by hand before and after a change to the hot path.

    .venv/bin/python tests/bench/inline_protocol.py [--requests 30000] [--rounds 9]
    .venv/bin/python tests/bench/inline_protocol.py --callgrind

It starts its own servers and the admin service (as `linkpulse bench` does), creates 200 links, runs the
redirect app's lifespan (so the lookup chain, the click publisher and NATS are real) and caches the
links, then feeds GETs straight into a `RedirectProtocol` whose transport only counts writes: what is
measured is the Python of a hot redirect from parser to response bytes, without the socket syscalls.

- Plain: CPU µs per request (this process's CPU time, the publisher's rounds included), median of rounds.
  On a shared machine this moves by ±20% between runs; compare runs made side by side.
- `--callgrind`: the same under valgrind's callgrind (valgrind from Debian's package), which counts
  instructions instead of time. It prints the instructions per request inside httptools' `feed_data`
  (the parser and every callback: the whole inline answer, the publisher's rounds not included).
  Repeatable to within 0.2% run to run, whatever else the machine is doing: the figure to quote for a
  change of a few percent. Measured on 2026-12-04: 118,978 for the code of the day's start, 65,385
  after its changes (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from litestar.testing import AsyncTestClient
from uvicorn.server import ServerState

from linkpulse.bench.seed import create_links
from linkpulse.localstack.stack import Stack, StackInfo
from linkpulse.redirect.app import create_app
from linkpulse.redirect.inline_door import RedirectProtocol
from linkpulse.redirect.settings import RedirectSettings

LINKS = 200
_FEED_DATA = "HttpParser_13feed_data"  # httptools' Cython symbol for HttpParser.feed_data


class _Transport:
    """Enough of an asyncio transport for uvicorn's protocol: writes are counted, never sent."""

    def __init__(self) -> None:
        self.writes = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _measure(info: StackInfo, requests: int, rounds: int) -> list[float]:
    env = dict(os.environ, LINKPULSE_NATS_URL=info.nats_url, LINKPULSE_REDIS_URL=info.redis_url,
               LINKPULSE_DATABASE_URL=info.database_url, LINKPULSE_HTTP_LOG_LEVEL="warning")  # fmt: skip
    links = await create_links(info.admin_url, info.admin_key, info.database_url, LINKS)
    app = create_app(RedirectSettings.from_env(env))
    async with AsyncTestClient(app) as client:  # runs the lifespan; its GETs cache every link
        for code, _ in links:
            response = await client.get(f"/{code}", follow_redirects=False)
            if response.status_code not in (301, 302, 307, 308):
                raise RuntimeError(f"/{code} answered {response.status_code}, not a redirect")
        config = uvicorn.Config(app, http=RedirectProtocol, lifespan="off", access_log=False,
                                server_header=False, proxy_headers=False)  # fmt: skip
        config.load()
        server_state = ServerState()
        server_state.default_headers = [(b"date", b"Fri, 04 Dec 2026 12:00:00 GMT")]
        protocol = RedirectProtocol(config=config, server_state=server_state, app_state={},
                                    _loop=asyncio.get_running_loop())  # fmt: skip
        transport = _Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        raw = [f"GET /{code} HTTP/1.1\r\nHost: sho.rt\r\nUser-Agent: bench/1.0\r\n\r\n".encode() for code, _ in links]
        publisher = app.state.publisher
        per_request = []
        for _ in range(rounds):
            started, writes = time.process_time(), transport.writes
            for i in range(requests):
                protocol.data_received(raw[i % LINKS])
                if i % 500 == 499:
                    await asyncio.sleep(0)  # let the publisher's loop run, as between a server's reads
            # The round's clicks published (and their CPU counted) before the clock stops; nothing
            # announces an empty queue, and polling costs this process next to nothing.
            while publisher.queued:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            per_request.append((time.process_time() - started) / requests * 1e6)
            if transport.writes - writes != requests:
                raise RuntimeError(f"{transport.writes - writes} answers for {requests} requests: not all inline")
        return per_request


def _run(requests: int, rounds: int) -> list[float]:
    stack = Stack(Path(tempfile.mkdtemp(prefix="linkpulse-inline-")) / "stack", os.environ,
                  redirect_port=0, admin_port=0, ingest_port=0, services=("admin",))  # fmt: skip
    stack.start()
    try:
        assert stack.info is not None
        return uvloop.run(_measure(stack.info, requests, rounds))
    finally:
        stack.stop()


def _callgrind(requests: int) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("valgrind is not on PATH: install it (Debian/Ubuntu: `apt-get install valgrind`) and run again")
    with tempfile.TemporaryDirectory(prefix="linkpulse-callgrind-") as folder:
        out = Path(folder) / "callgrind.out"
        subprocess.run([valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                        "--requests", str(requests), "--rounds", "1"], check=True, capture_output=True)  # fmt: skip
        annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)],
                                   check=True, capture_output=True, text=True).stdout  # fmt: skip
    match = re.search(rf"^\s*([\d,]+) .*{_FEED_DATA}", annotated, re.M)
    if match is None:
        sys.exit(f"no {_FEED_DATA} in callgrind's profile: did httptools change?")
    instructions = int(match.group(1).replace(",", ""))
    print(f"{instructions / requests:,.0f} instructions per hot redirect ({requests:,} requests, feed_data inclusive)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--requests", type=int, default=None, help="requests a round (default 30000; 5000 with --callgrind)"
    )
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--callgrind", action="store_true", help="count instructions under valgrind instead")
    args = parser.parse_args()
    if args.callgrind:
        _callgrind(args.requests or 5000)
        return
    per_request = _run(args.requests or 30000, args.rounds)
    print(f"CPU per hot redirect: median {statistics.median(per_request):.1f} µs "
          f"(rounds: {', '.join(f'{x:.1f}' for x in per_request)})")  # fmt: skip


if __name__ == "__main__":
    main()
