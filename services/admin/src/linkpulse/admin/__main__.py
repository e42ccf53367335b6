"""`python -m linkpulse.admin`: read settings, set up logging, serve the admin API."""

from __future__ import annotations

import os

from linkpulse.admin.settings import AdminSettings
from linkpulse.logs import configure_logging, exit_at_start
from linkpulse.telemetry import check_tracing_env
from linkpulse.web.server import serve


def main() -> None:
    """Serve until SIGTERM; uvicorn's workers build the app again from the environment."""
    configure_logging()  # before the settings are read: a bad one is a log line too
    try:
        settings = AdminSettings.from_env(os.environ)
        check_tracing_env()
    except ValueError as exc:  # SettingsError too
        exit_at_start("admin", exc)
    configure_logging(settings.http.log_level)
    serve("linkpulse.admin.app:create_app", settings.http)


if __name__ == "__main__":
    main()
