"""HTTP handlers of `/api/v1/links/bulk` and `/api/v1/links/export`; parsing in bulk.py, SQL in bulk_service.py."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Reference, RequestBody, Schema
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_415_UNSUPPORTED_MEDIA_TYPE, HTTP_422_UNPROCESSABLE_ENTITY

from linkpulse.admin.api import ErrorBody, error_responses
from linkpulse.admin.auth import LINKS_READ, LINKS_WRITE, authenticated, requires
from linkpulse.admin.limits import BoundedStream, RequestLimits
from linkpulse.admin.links.bulk import (
    EXPORT_COLUMNS,
    MAX_ROWS,
    TAG_SEPARATOR,
    BulkRejected,
    RowError,
    UploadError,
    parse_upload,
)
from linkpulse.admin.links.bulk_service import BulkCreated, LinkBulkService
from linkpulse.admin.links.schemas import MAX_TAG_CHARS
from linkpulse.admin.settings import AdminSettings
from linkpulse.web.plugin import error_response

__all__ = ["BULK_MAX_BODY_BYTES", "LinkBulkController", "provide_bulk_service"]

BULK_MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest bulk upload (8 MiB, about 800 bytes a row at 10,000 rows); other routes keep the app's limit."""

# No tag holds one (create refuses them), and Postgres refuses NUL in text outright.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

log = structlog.get_logger(__name__)


class BulkErrorBody(msgspec.Struct, frozen=True):
    """A refused upload: every failing row, and nothing stored."""

    status: int
    detail: str
    errors: list[RowError] = msgspec.field(default_factory=list)
    """Every failing row (absent when the upload as a whole is refused, e.g. too many rows)."""


def provide_bulk_service(state: State) -> LinkBulkService:
    """A LinkBulkService over the app's pool, Redis client and JetStream context."""
    settings: AdminSettings = state.settings
    return LinkBulkService(state.db, state.redis, state.js, options=settings.admin, redis_ttl=settings.redis.ttl)


def _rejected(_: Request[Any, Any, Any], exc: BulkRejected) -> Response[Any]:
    return error_response(HTTP_422_UNPROCESSABLE_ENTITY, str(exc), [msgspec.to_builtins(e) for e in exc.errors])


@dataclass
class _BulkOperation(Operation):
    """The request body is read by hand (JSON or CSV), so it is documented here, both media types."""

    def __post_init__(self) -> None:
        row = Schema(
            all_of=[
                Reference("#/components/schemas/LinkCreate"),
                Schema(
                    type=OpenAPIType.OBJECT,
                    properties={"active": Schema(type=OpenAPIType.BOOLEAN, default=True)},
                ),
            ]
        )
        self.request_body = RequestBody(
            required=True,
            description=(
                f"Up to {MAX_ROWS} links, all stored or none. CSV: a header row naming the columns (`url` required;"
                " code, redirect_type, expires_at, max_clicks, tags, title, forward_query, active); tags separated"
                f" by `{TAG_SEPARATOR}`; an empty cell means not given. An export re-imports as is."
            ),
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.ARRAY, items=row, max_items=MAX_ROWS)
                ),
                "text/csv": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),
            },
        )


class LinkBulkController(Controller):
    """Create many links at once, and export them all as CSV."""

    path = "/api/v1/links"
    tags = ["links"]
    guards = [authenticated]
    security = [{"apiKey": []}]
    dependencies = {"bulk": Provide(provide_bulk_service, sync_to_thread=False)}
    exception_handlers = {BulkRejected: _rejected}

    @post(
        "/bulk",
        operation_id="bulkCreateLinks",
        summary="Create up to 10,000 links from JSON or CSV, all or none",
        guards=[requires(LINKS_WRITE)],
        status_code=HTTP_201_CREATED,
        request_max_body_size=BULK_MAX_BODY_BYTES,
        operation_class=_BulkOperation,
        responses={
            **error_responses(400, 401, 403, 413, 503),
            HTTP_415_UNSUPPORTED_MEDIA_TYPE: ResponseSpec(
                data_container=ErrorBody, description="Neither JSON nor CSV", generate_examples=False
            ),
            HTTP_422_UNPROCESSABLE_ENTITY: ResponseSpec(
                data_container=BulkErrorBody,
                description="Invalid rows (each in `errors`, numbered from 1 after any header), or too many rows",
                generate_examples=False,
            ),
        },
    )
    async def bulk_create(
        self,
        request: Request[Any, Any, Any],
        bulk: NamedDependency[LinkBulkService],
        limits: NamedDependency[RequestLimits],
    ) -> BulkCreated:
        """Validate every row, then store every link with its outbox row in one transaction; 201 with the codes."""
        # A slot before the body is read: a burst of uploads holds a bounded number of bodies and rows.
        with limits.bulk.taken():
            body = await request.body()
            try:
                # Parsing 10,000 rows takes a moment of CPU: off the event loop, so other requests go on.
                upload = await asyncio.to_thread(parse_upload, body, request.headers.get("content-type", ""))
            except UploadError as exc:
                raise ClientException(detail=exc.detail, status_code=exc.status_code) from None
            created = await bulk.create(upload)
        log.info("bulk.created", links=created.created, api_key_id=request.auth.key_id)
        return created

    @get(
        "/export",
        operation_id="exportLinks",
        summary="Export every live link as CSV",
        guards=[requires(LINKS_READ)],
        media_type="text/csv",
        response_description="CSV with a header row: " + ", ".join(EXPORT_COLUMNS),
        responses=error_responses(400, 401, 403, 422, 503),
    )
    async def export_links(
        self,
        bulk: NamedDependency[LinkBulkService],
        limits: NamedDependency[RequestLimits],
        tag: Annotated[
            str | None, QueryParameter(description=f"Only links carrying this tag (at most {MAX_TAG_CHARS} chars).")
        ] = None,
    ) -> BoundedStream:
        """CSV, streamed, one row per link not deleted (only those tagged `tag` if given), oldest first.

        Values starting with `=`, `+`, `-` or `@` get a `'` in front, so a spreadsheet shows them as text;
        importing the file removes it again.
        """
        # Checked here, before the stream starts (once it has, a failure can only cut the file
        # short), and answered 422 as the API's other input errors are.
        if tag is not None and (len(tag) > MAX_TAG_CHARS or _CONTROL.search(tag)):
            raise ClientException(
                detail=f"tag must be at most {MAX_TAG_CHARS} characters, without control characters",
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
            )
        return BoundedStream(
            bulk.export(tag),
            release=limits.export.take(),
            send_timeout=limits.export_send_timeout,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="links.csv"'},
        )
