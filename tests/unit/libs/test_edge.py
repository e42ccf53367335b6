"""The edge's settings and how a protocol class gets them (its behaviour: tests/integration/libs/test_edge.py)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from linkpulse.admin.settings import AdminSettings
from linkpulse.redirect.inline_door import RedirectProtocol
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.settings import HttpSettings, SettingsError
from linkpulse.web.edge import EdgeProtocol


def test_the_defaults_are_10_s_for_a_head_8_kib_of_url_32_kib_and_100_lines_of_headers() -> None:
    http = HttpSettings()
    assert (http.header_timeout, http.max_url_bytes, http.max_header_bytes, http.max_header_lines) == (
        10.0, 8192, 32768, 100)  # fmt: skip
    # Room for hundreds of idle clients per worker, within the open-files limits of common hosts once raised.
    assert 300 < http.max_connections <= 8192


def test_both_services_read_the_edge_settings_from_their_variables() -> None:
    env = {"LINKPULSE_HTTP_MAX_CONNECTIONS": "50", "LINKPULSE_HTTP_HEADER_TIMEOUT": "2.5",
           "LINKPULSE_HTTP_MAX_URL_BYTES": "100", "LINKPULSE_HTTP_MAX_HEADER_BYTES": "2000",
           "LINKPULSE_HTTP_MAX_HEADER_LINES": "20"}  # fmt: skip
    for http in (RedirectSettings.from_env(env).http, AdminSettings.from_env(env).http):
        assert (http.max_connections, http.header_timeout, http.max_url_bytes) == (50, 2.5, 100)
        assert (http.max_header_bytes, http.max_header_lines) == (2000, 20)
    assert AdminSettings.from_env(env).http.port == 8001  # the admin's own default survives


@pytest.mark.parametrize("field", ["MAX_CONNECTIONS", "HEADER_TIMEOUT", "MAX_URL_BYTES", "MAX_HEADER_LINES"])
def test_a_limit_of_zero_is_refused_naming_the_variable(field: str) -> None:
    with pytest.raises(SettingsError, match=f"LINKPULSE_HTTP_{field}"):
        RedirectSettings.from_env({f"LINKPULSE_HTTP_{field}": "0"})


def test_configured_makes_a_subclass_carrying_the_settings_and_leaves_the_class_alone() -> None:
    http = HttpSettings(max_connections=7, header_timeout=1.0)
    for base in (EdgeProtocol, RedirectProtocol):
        configured = base.configured(http)
        assert issubclass(configured, base) and configured is not base
        assert configured.settings is http and base.settings == HttpSettings()
        assert (configured.__name__, configured.__module__) == (base.__name__, base.__module__)
        # What a spawned worker is handed is the class itself, by name; it configures it there.
        assert pickle.loads(pickle.dumps(base)) is base


_RAISE_LIMIT = """
import resource
from linkpulse.settings import HttpSettings
from linkpulse.web.server import FILES_RESERVE, _room_for_connections
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
_room_for_connections(HttpSettings(max_connections=1000))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1000 + FILES_RESERVE, hard)
"""


def test_the_open_files_limit_is_raised_to_fit_the_connection_bound() -> None:
    # In a fresh interpreter: the limit is the whole process's.
    out = subprocess.run([sys.executable, "-c", _RAISE_LIMIT], capture_output=True, text=True, timeout=60, check=True)
    soft, wanted, hard = (int(x) for x in out.stdout.split())
    assert soft == min(wanted, hard) if hard >= 0 else soft == wanted
