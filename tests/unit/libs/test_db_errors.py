"""Which asyncpg failures mean "retry later" and which mean "this data will never go in"."""

from __future__ import annotations

import asyncpg
import pytest

from linkpulse.db.errors import is_data_error, is_unavailable


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        # What a connection whose session died mid-transaction raises on its next use.
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    ],
)
def test_lost_postgres_is_unavailable_not_bad_data(exc: BaseException) -> None:
    assert is_unavailable(exc)
    assert not is_data_error(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.InvalidTextRepresentationError("invalid input syntax for type inet"),
        asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00"),
        asyncpg.DataError("invalid input for query argument $1"),
    ],
)
def test_rejected_data_is_a_data_error_not_an_outage(exc: BaseException) -> None:
    assert is_data_error(exc)
    assert not is_unavailable(exc)


def test_programming_errors_are_neither() -> None:
    assert not is_unavailable(ValueError("a bug of ours"))
    assert not is_data_error(KeyError("code"))
