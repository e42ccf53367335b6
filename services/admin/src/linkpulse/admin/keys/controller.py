"""HTTP handlers of `/api/v1/keys` (scope `admin`); the key is minted and stored by the service."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import CacheControlHeader, State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY

from linkpulse.admin.api import StrictBody, error_responses
from linkpulse.admin.auth import ADMIN, authenticated, requires
from linkpulse.admin.keys.schemas import ApiKey, CreatedKey, KeyCreate
from linkpulse.admin.keys.service import InvalidInput, KeyService

__all__ = ["KeyController", "provide_key_service"]

log = structlog.get_logger(__name__)


def provide_key_service(state: State) -> KeyService:
    """A KeyService over the app's pool."""
    return KeyService(state.db)


class KeyController(Controller):
    """Create, list and revoke API keys."""

    path = "/api/v1/keys"
    tags = ["keys"]
    guards = [authenticated, requires(ADMIN)]
    security = [{"apiKey": []}]
    dependencies = {"keys": Provide(provide_key_service, sync_to_thread=False)}

    @post(
        "/",
        operation_id="createKey",
        summary="Create an API key (the plain key is in this answer only)",
        dto=StrictBody[KeyCreate],
        return_dto=None,
        # The answer holds a secret: no cache on the way may keep it.
        cache_control=CacheControlHeader(no_store=True),
        responses=error_responses(400, 401, 403, 413, 422),
    )
    async def create_key(
        self, data: JSONBody[KeyCreate], keys: NamedDependency[KeyService], request: Request[Any, Any, Any]
    ) -> CreatedKey:
        """Mint a key with the given scopes; 201 with the key, which is never shown again."""
        try:
            created = await keys.create(data)
        except InvalidInput as exc:
            raise ValidationException(detail=str(exc), status_code=HTTP_422_UNPROCESSABLE_ENTITY) from None
        # The prefix identifies the key in logs; the key itself is never logged.
        log.info(
            "api_key.created",
            key_id=created.id,
            prefix=created.prefix,
            scopes=created.scopes,
            api_key_id=request.auth.key_id,
        )
        return created

    @get(
        "/",
        operation_id="listKeys",
        summary="List API keys, revoked and expired ones included (no key material)",
        responses=error_responses(401, 403),
    )
    async def list_keys(self, keys: NamedDependency[KeyService]) -> list[ApiKey]:
        """Every key, oldest first, with its prefix, scopes and dates."""
        return await keys.list()

    @delete(
        "/{key_id:int}",
        operation_id="revokeKey",
        summary="Revoke an API key at once",
        responses=error_responses(401, 403, 404),
    )
    async def revoke_key(
        self, key_id: FromPath[int], keys: NamedDependency[KeyService], request: Request[Any, Any, Any]
    ) -> None:
        """The next request with the key gets 401. Idempotent; a key may revoke itself."""
        revocation = await keys.revoke(key_id)
        if revocation is None:
            raise NotFoundException(detail=f"no API key with id {key_id}")
        if not revocation.already_revoked:
            log.info(
                "api_key.revoked",
                key_id=key_id,
                prefix=revocation.key.prefix,
                api_key_id=request.auth.key_id,
                itself=key_id == request.auth.key_id,
            )
