"""`python -m linkpulse.redirect`: serve the redirect app with settings from the environment."""

from __future__ import annotations

import os

from linkpulse.logs import configure_logging, exit_at_start
from linkpulse.redirect.inline_door import RedirectProtocol
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.telemetry import check_tracing_env
from linkpulse.web.server import serve


def main() -> None:
    configure_logging()  # before the settings are read: a bad one is a log line too
    try:
        settings = RedirectSettings.from_env(os.environ)
        check_tracing_env()
    except ValueError as exc:  # SettingsError too
        exit_at_start("redirect", exc)
    configure_logging(settings.http.log_level)
    serve("linkpulse.redirect.app:create_app", settings.http, protocol=RedirectProtocol)


if __name__ == "__main__":
    main()
