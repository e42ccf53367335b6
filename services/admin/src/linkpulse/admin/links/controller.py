"""HTTP handlers of `/api/v1/links`; validation and SQL live in the schemas and the service."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_409_CONFLICT, HTTP_422_UNPROCESSABLE_ENTITY

from linkpulse.admin.api import StrictBody, error_responses
from linkpulse.admin.auth import LINKS_READ, LINKS_WRITE, authenticated, requires
from linkpulse.admin.links.schemas import Link, LinkCreate
from linkpulse.admin.links.service import CodeTaken, InvalidInput, LinkService
from linkpulse.admin.settings import AdminSettings

__all__ = ["LinkController", "provide_link_service"]

log = structlog.get_logger(__name__)


def provide_link_service(state: State) -> LinkService:
    """A LinkService over the app's pool, Redis client and JetStream context."""
    settings: AdminSettings = state.settings
    return LinkService(state.db, state.redis, state.js, options=settings.admin, redis_ttl=settings.redis.ttl)


class LinkController(Controller):
    """Create and read short links."""

    path = "/api/v1/links"
    tags = ["links"]
    guards = [authenticated]
    security = [{"apiKey": []}]
    dependencies = {"links": Provide(provide_link_service, sync_to_thread=False)}

    @post(
        "/",
        operation_id="createLink",
        summary="Create a short link",
        guards=[requires(LINKS_WRITE)],
        dto=StrictBody[LinkCreate],
        return_dto=None,
        responses=error_responses(400, 401, 403, 409, 413, 422),
    )
    async def create_link(
        self, data: JSONBody[LinkCreate], links: NamedDependency[LinkService], request: Request[Any, Any, Any]
    ) -> Link:
        """Create a link with the given code, or a random 7-character one; 201 with the link."""
        try:
            link = await links.create(data)
        except InvalidInput as exc:
            raise ValidationException(detail=str(exc), status_code=HTTP_422_UNPROCESSABLE_ENTITY) from None
        except CodeTaken as exc:
            raise ClientException(detail=str(exc), status_code=HTTP_409_CONFLICT) from None
        log.info("link.created", code=link.code, api_key_id=request.auth.key_id)
        return link

    @get(
        "/{code:str}",
        operation_id="getLink",
        summary="Get a link with its click totals",
        guards=[requires(LINKS_READ)],
        responses=error_responses(400, 401, 403, 404),
    )
    async def get_link(self, code: FromPath[str], links: NamedDependency[LinkService]) -> Link:
        """The link; `clicks` counts humans, `bot_clicks` the rest."""
        link = await links.get(code)
        if link is None:
            raise NotFoundException(detail=f"no link with code {code!r}")
        return link
