"""All nats-py calls live here: connections, streams and consumers as data, publishing (LinkChanged too),
pull consuming (ingest's shards), following LINKS, the types and errors callers name, read-only inspection
for the bench, NATS users' permissions and trace context."""
