"""`python -m linkpulse.redirect`: serve the redirect app with settings from the environment."""

from __future__ import annotations

import os
import sys

from linkpulse.logs import configure_logging
from linkpulse.redirect.inline_door import RedirectProtocol
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.telemetry import check_tracing_env
from linkpulse.web.server import serve


def main() -> None:
    settings = RedirectSettings.from_env(os.environ)
    try:
        check_tracing_env()
    except ValueError as exc:
        sys.exit(f"linkpulse-redirect: {exc}")
    configure_logging(settings.http.log_level)
    serve("linkpulse.redirect.app:create_app", settings.http, protocol=RedirectProtocol)


if __name__ == "__main__":
    main()
