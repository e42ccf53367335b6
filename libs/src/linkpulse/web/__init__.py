"""What both HTTP services share: the ServicePlugin (health, readiness, metrics, `{status, detail}` errors), the
uvicorn server with its bounded public edge, trusted proxies, and server spans."""

from linkpulse.web.plugin import LivenessCheck, ReadinessCheck, ServicePlugin

__all__ = ["LivenessCheck", "ReadinessCheck", "ServicePlugin"]
