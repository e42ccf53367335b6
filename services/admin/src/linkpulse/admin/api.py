"""API conventions: strict JSON request bodies (422 naming the field) and documented `{status, detail}` errors."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import asyncpg
import msgspec
import structlog
from litestar import Request, Response
from litestar.dto import MsgspecDTO
from litestar.exceptions import ClientException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Reference, Schema
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_422_UNPROCESSABLE_ENTITY, HTTP_503_SERVICE_UNAVAILABLE
from litestar.typing import FieldDefinition

from linkpulse.web.plugin import error_response

__all__ = [
    "SLOW_QUERY_HANDLERS",
    "ErrorBody",
    "StrictBody",
    "csv_response",
    "error_responses",
    "field_error",
    "slow_query_handler",
    "validation_error_handler",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")

_DESCRIPTIONS = {
    400: "Malformed request: not JSON, or no body",
    401: "Missing, unknown, revoked or expired API key",
    403: "The API key lacks the scope",
    404: "No such resource",
    409: "Conflicts with an existing resource",
    413: "Request body too large",
    422: "Invalid input; `detail` names the field and the reason",
    429: "Too many failed authentications from this address; `Retry-After` says when to try again",
    503: "Too many requests of this kind at once, or the database did not answer in time; `Retry-After` says when "
    "to try again",
}


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error the API returns."""

    status: int
    detail: str


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses a handler can answer (a route that authenticates can also 429)."""
    if 401 in codes:
        codes = (*dict.fromkeys((*codes, 429)),)
    return {
        c: ResponseSpec(data_container=ErrorBody, description=_DESCRIPTIONS[c], generate_examples=False) for c in codes
    }


def csv_response(description: str) -> ResponseSpec:
    """The OpenAPI entry of a CSV download (a text/csv string); `description` names its columns."""
    return ResponseSpec(data_container=str, description=description, media_type="text/csv", generate_examples=False)


def field_error(exc: msgspec.ValidationError) -> dict[str, str]:
    """A msgspec error as `{message, key, source}`, the message naming the field first.

    "Expected `int`, got `str` - at `$.max_clicks`" becomes "max_clicks: Expected `int`, got `str`".
    """
    message, sep, path = str(exc).partition(" - at `$")
    key = path.rstrip("`").lstrip(".") if sep else ""
    return {"message": f"{key}: {message}" if key else message, "key": key, "source": "body"}


class StrictBody(MsgspecDTO[T], Generic[T]):
    """Decode a JSON body straight into its struct, strictly.

    Litestar's own body parsing converts leniently (`"301"` becomes 301, `"true"` becomes True)
    and answers 400. An API that stores what it is sent should refuse a wrong JSON type, and a
    body that parses but does not fit is 422, as the rest of the API's input errors are.
    """

    def decode_bytes(self, value: bytes) -> Any:
        """Bytes → the struct; 400 when the bytes are not JSON, 422 when the JSON does not fit."""
        try:
            return msgspec.json.decode(value, type=self.model_type, strict=True)
        except msgspec.ValidationError as exc:
            error = field_error(exc)
            raise ValidationException(
                detail=error["message"], status_code=HTTP_422_UNPROCESSABLE_ENTITY, extra=[error]
            ) from None
        except msgspec.DecodeError as exc:
            raise ClientException(detail=f"malformed JSON: {exc}") from None
        except UnicodeDecodeError as exc:
            # msgspec checks UTF-8 only in the strings it keeps, and raises this rather than a DecodeError.
            raise ClientException(detail=f"malformed JSON: not valid UTF-8 at byte offset {exc.start}") from None
        except RecursionError:
            raise ClientException(detail="malformed JSON: nested too deeply") from None

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Reference | Schema:
        """Document the struct itself, not a DTO-generated copy of it."""
        schema: Reference | Schema = schema_creator.for_field_definition(
            FieldDefinition.from_annotation(cls.model_type)
        )
        return schema


def validation_error_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """`{status, detail, errors}` as ServicePlugin answers it, with a plain reason for an empty body.

    Litestar reports a missing body as a failed `data` parameter whose message is `'data'`.
    """
    errors = [e for e in exc.extra if isinstance(e, dict)] if isinstance(exc.extra, list) else []
    if any(e.get("key") == "data" and e.get("message") == "'data'" for e in errors):
        return error_response(HTTP_400_BAD_REQUEST, "a JSON request body is required")
    reason = "; ".join(str(e.get("message", "")) for e in errors) or exc.detail
    return error_response(exc.status_code, reason, errors or None)


def slow_query_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A read that outlasted the database's command timeout (or Postgres away): 503 saying what to try, not a 500.

    Stats answered from the clicks rather than the rollups (a filter's top lists, hour visitors; see
    docs/analytics.md, "Slicing the stats") grow with a link's clicks in the window, so a big link's may take longer
    than the timeout allows.
    """
    log.warning("stats.query_timeout", path=request.url.path, error=type(exc).__name__)
    return error_response(
        HTTP_503_SERVICE_UNAVAILABLE,
        "the database did not answer in time: for a link with many clicks, ask for a shorter window, the day "
        'interval or no filter (docs/analytics.md, "Slicing the stats")',
        headers={"Retry-After": "10"},
    )


SLOW_QUERY_HANDLERS = {TimeoutError: slow_query_handler, asyncpg.QueryCanceledError: slow_query_handler}
"""Exception handlers of the stats controllers (asyncpg's command timeout raises TimeoutError)."""
