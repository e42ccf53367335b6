"""All nats-py calls live here: connections, streams and consumers as data, publishing (LinkChanged too), the
errors callers catch, read-only inspection for the bench, NATS users' permissions and trace context."""
