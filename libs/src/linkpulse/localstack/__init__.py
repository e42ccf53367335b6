"""The local stack: nats-server, redis-server and PostgreSQL from their PyPI wheels, and the services; a TCP
proxy that injects network faults in front of any of them (for tests).

`linkpulse up` and the pytest fixtures both use it, so there is one way to run the real parts.
"""
