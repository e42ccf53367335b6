"""All nats-py calls live here: connections, stream and consumer definitions, publishing, consuming."""
