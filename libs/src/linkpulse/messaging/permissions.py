"""Who may publish and subscribe to what: the NATS user of each service, narrowed to the subjects it uses."""

from __future__ import annotations

from dataclasses import dataclass

from linkpulse.messaging.streams import CLICKS_STREAM, LINKS_STREAM

__all__ = ["CLIENT_NAMES", "SERVICE_USERS", "SETUP_USER", "Permissions", "inbox_prefix", "permissions"]

SETUP_USER = "setup"
"""The one user that manages streams and consumers (`linkpulse streams`, the chart's streams job); also
the operator's user for inspection (`linkpulse bench`, tests)."""
SERVICE_USERS = ("redirect", "admin", "ingest")
CLIENT_NAMES = {user: f"linkpulse-{user}" for user in SERVICE_USERS}
"""The client name each service connects with (`linkpulse.messaging.connect`)."""


def inbox_prefix(client_name: str) -> str:
    """Reply subjects of one client: `_INBOX.<client name>`, so its user may read its own replies only.

    JetStream answers publishes (acks) and API requests on the requester's inbox, and push consumers deliver
    there; with the default `_INBOX` every user allowed to read replies could read every other's.
    """
    return f"_INBOX.{client_name}"


@dataclass(frozen=True)
class Permissions:
    """Subjects one NATS user may publish to and subscribe to (nats-server `permissions` blocks)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def permissions(user: str) -> Permissions:
    """The narrowest permissions with which `user`'s service works.

    - redirect publishes clicks (JetStream answers the ack on its inbox) and follows LINKS with an ordered
      push consumer: nats-py creates it as an unnamed ephemeral (`CONSUMER.CREATE.LINKS`), the messages come
      to its inbox, and flow-control requests are answered on `$JS.FC.LINKS.>`.
    - admin publishes link changes.
    - ingest creates its durable pull consumers (nats-py's durable create API), pulls (`MSG.NEXT`), reads
      their info and acks (`$JS.ACK`, also for in_progress and nak), on CLICKS only: a wildcard is a whole
      token, so `ingest-*` cannot be written, and the consumer name is left open. It never creates streams,
      nor deletes a consumer.
    """
    inbox = f"{inbox_prefix(CLIENT_NAMES[user])}.>"
    if user == "redirect":
        return Permissions(
            publish=("clicks.>", f"$JS.API.CONSUMER.CREATE.{LINKS_STREAM}", f"$JS.FC.{LINKS_STREAM}.>"),
            subscribe=(inbox,),
        )
    if user == "admin":
        return Permissions(publish=("links.>",), subscribe=(inbox,))
    if user == "ingest":
        return Permissions(
            publish=(
                f"$JS.API.CONSUMER.DURABLE.CREATE.{CLICKS_STREAM}.*",
                f"$JS.API.CONSUMER.INFO.{CLICKS_STREAM}.*",
                f"$JS.API.CONSUMER.MSG.NEXT.{CLICKS_STREAM}.*",
                f"$JS.ACK.{CLICKS_STREAM}.>",
            ),
            subscribe=(inbox,),
        )
    raise ValueError(f"unknown NATS user {user!r}; known: {', '.join(SERVICE_USERS)}")
