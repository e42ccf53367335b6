"""A served app is built before the event loop starts, and what building it made is frozen for the GC."""

from __future__ import annotations

import subprocess
import sys

# In a fresh interpreter: freezing is for the whole process, and this one runs the other tests.
_PROBE = """
import gc
import uvicorn
from linkpulse.web.server import loaded_server
config = uvicorn.Config("linkpulse.redirect.app:create_app", factory=True, lifespan="off")
before = gc.get_freeze_count()
server = loaded_server(config)
print(before, gc.get_freeze_count(), config.loaded, type(server).__name__)
"""


def test_the_built_app_is_frozen_out_of_full_collections() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
    before, after, loaded, kind = out.stdout.split()
    assert (int(before), loaded, kind) == (0, "True", "Server")
    # The app's modules, routes and handlers: tens of thousands of objects a full collection now skips.
    assert int(after) > 20_000
