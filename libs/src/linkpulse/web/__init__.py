"""What both HTTP services share: health, readiness, metrics and the `{status, detail}` error shape."""

from linkpulse.web.plugin import ReadinessCheck, ServicePlugin

__all__ = ["ReadinessCheck", "ServicePlugin"]
