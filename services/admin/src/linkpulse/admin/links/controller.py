"""HTTP handlers of `/api/v1/links`; validation and SQL live in the schemas and the service."""

from __future__ import annotations

import re
from typing import Annotated, Any

import structlog
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_409_CONFLICT, HTTP_422_UNPROCESSABLE_ENTITY

from linkpulse.admin.api import StrictBody, error_responses, validation_error_handler
from linkpulse.admin.auth import LINKS_READ, LINKS_WRITE, authenticated, requires
from linkpulse.admin.links.schemas import MAX_TAG_CHARS, Link, LinkCreate, LinkPage, LinkUpdate, decode_cursor
from linkpulse.admin.links.service import CodeTaken, InvalidInput, LinkService
from linkpulse.admin.settings import AdminSettings

__all__ = ["LinkController", "provide_link_service"]

log = structlog.get_logger(__name__)

MAX_PAGE = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_QUERY_CHARS = 200


def provide_link_service(state: State) -> LinkService:
    """A LinkService over the app's pool, Redis client and JetStream context."""
    settings: AdminSettings = state.settings
    return LinkService(state.db, state.redis, state.js, options=settings.admin, redis_ttl=settings.redis.ttl)


def parameter_errors_are_422(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """A query or path parameter that does not fit (`limit=0`, `limit=abc`) is invalid input: 422 naming it.

    Litestar answers parameter errors with 400, which this API keeps for malformed requests.
    """
    errors = [e for e in exc.extra if isinstance(e, dict)] if isinstance(exc.extra, list) else []
    if exc.status_code == HTTP_400_BAD_REQUEST and any(e.get("source") in ("query", "path") for e in errors):
        named = [{**e, "message": f"{e.get('key')}: {e.get('message')}"} if e.get("key") else e for e in errors]
        exc = ValidationException(detail=exc.detail, status_code=HTTP_422_UNPROCESSABLE_ENTITY, extra=named)
    return validation_error_handler(request, exc)


def _invalid(exc: InvalidInput) -> ValidationException:
    return ValidationException(detail=str(exc), status_code=HTTP_422_UNPROCESSABLE_ENTITY)


def _not_found(code: str) -> NotFoundException:
    return NotFoundException(detail=f"no link with code {code!r}")


class LinkController(Controller):
    """Create, list, read, change and delete short links."""

    path = "/api/v1/links"
    tags = ["links"]
    guards = [authenticated]
    security = [{"apiKey": []}]
    dependencies = {"links": Provide(provide_link_service, sync_to_thread=False)}
    exception_handlers = {ValidationException: parameter_errors_are_422}

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
            raise _invalid(exc) from None
        except CodeTaken as exc:
            raise ClientException(detail=str(exc), status_code=HTTP_409_CONFLICT) from None
        log.info("link.created", code=link.code, api_key_id=request.auth.key_id)
        return link

    @get(
        "/",
        operation_id="listLinks",
        summary="List links, newest first",
        guards=[requires(LINKS_READ)],
        responses=error_responses(401, 403, 422),
    )
    async def list_links(
        self,
        links: NamedDependency[LinkService],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description="Links per page.")] = 50,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="`next_cursor` of the previous page.")
        ] = None,
        q: Annotated[
            str | None,
            QueryParameter(max_length=MAX_QUERY_CHARS, description="Case-insensitive substring of code, URL or title."),
        ] = None,
        tag: Annotated[
            str | None, QueryParameter(max_length=MAX_TAG_CHARS, description="Links carrying this tag.")
        ] = None,
    ) -> LinkPage:
        """Live links (deleted ones are left out) with their click totals; follow `next_cursor` until it is null."""
        try:
            after = decode_cursor(cursor) if cursor else None
        except InvalidInput as exc:
            raise _invalid(exc) from None
        # No stored code, URL, title or tag holds one, and Postgres refuses NUL in a parameter.
        for name, value in (("q", q), ("tag", tag)):
            if value is not None and _CONTROL.search(value):
                raise _invalid(InvalidInput(f"{name} must not contain control characters"))
        return await links.search(limit=limit, after=after, q=q, tag=tag)

    @get(
        "/{code:str}",
        operation_id="getLink",
        summary="Get a link with its click totals",
        guards=[requires(LINKS_READ)],
        responses=error_responses(400, 401, 403, 404),
    )
    async def get_link(self, code: FromPath[str], links: NamedDependency[LinkService]) -> Link:
        """The link; `clicks` counts humans, `bot_clicks` the rest. A deleted link is 404 here (410 on redirect)."""
        link = await links.get(code)
        if link is None:
            raise _not_found(code)
        return link

    @patch(
        "/{code:str}",
        operation_id="updateLink",
        summary="Change a link",
        guards=[requires(LINKS_WRITE)],
        dto=StrictBody[LinkUpdate],
        return_dto=None,
        responses=error_responses(400, 401, 403, 404, 413, 422),
    )
    async def update_link(
        self,
        code: FromPath[str],
        data: JSONBody[LinkUpdate],
        links: NamedDependency[LinkService],
        request: Request[Any, Any, Any],
    ) -> Link:
        """Change the fields sent (null clears `expires_at`, `max_clicks`, `title`); redirects see it within 1 s."""
        try:
            link = await links.update(code, data)
        except InvalidInput as exc:
            raise _invalid(exc) from None
        if link is None:
            raise _not_found(code)
        log.info("link.updated", code=code, version=link.version, api_key_id=request.auth.key_id)
        return link

    @delete(
        "/{code:str}",
        operation_id="deleteLink",
        summary="Delete a link",
        guards=[requires(LINKS_WRITE)],
        responses=error_responses(401, 403, 404),
    )
    async def delete_link(
        self, code: FromPath[str], links: NamedDependency[LinkService], request: Request[Any, Any, Any]
    ) -> None:
        """Soft delete, 204: the code stays taken (creating it again is 409) and redirects answer 410."""
        if not await links.delete(code):
            raise _not_found(code)
        log.info("link.deleted", code=code, api_key_id=request.auth.key_id)
