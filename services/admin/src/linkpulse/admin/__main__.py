"""`python -m linkpulse.admin`: read settings, set up logging, serve the admin API."""

from __future__ import annotations

import os
import sys

from linkpulse.admin.settings import AdminSettings
from linkpulse.logs import configure_logging
from linkpulse.settings import SettingsError
from linkpulse.telemetry import check_tracing_env
from linkpulse.web.server import serve


def main() -> None:
    """Serve until SIGTERM; uvicorn's workers build the app again from the environment."""
    try:
        settings = AdminSettings.from_env(os.environ)
        check_tracing_env()
    except (SettingsError, ValueError) as exc:
        sys.exit(f"linkpulse-admin: {exc}")
    configure_logging(settings.http.log_level)
    serve("linkpulse.admin.app:create_app", settings.http)


if __name__ == "__main__":
    main()
