"""What both HTTP services share: health, readiness, metrics and the `{status, detail}` error shape."""

from linkpulse.web.plugin import LivenessCheck, ReadinessCheck, ServicePlugin

__all__ = ["LivenessCheck", "ReadinessCheck", "ServicePlugin"]
