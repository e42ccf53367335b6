"""The local stack: nats-server, redis-server and PostgreSQL from their PyPI wheels, and the services.

`linkpulse up` and the pytest fixtures both use it, so there is one way to run the real parts.
"""
