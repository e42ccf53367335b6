"""Per-service Postgres login roles, members of the group roles the migrations grant to."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping

import asyncpg

__all__ = ["SERVICE_ROLES", "ensure_login_roles", "login_role", "scram_verifier"]

SERVICE_ROLES = {"redirect": "linkpulse_redirect", "ingest": "linkpulse_ingest", "admin": "linkpulse_admin"}
"""Service → its NOLOGIN group role, created and granted by migration 0005_service_roles."""

_SCRAM_ITERATIONS = 4096  # Postgres's own default (scram_iterations)


def login_role(service: str) -> str:
    """The LOGIN role a service connects as: `linkpulse_<service>_login`."""
    return f"{SERVICE_ROLES[service]}_login"


def scram_verifier(password: str) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for `password` (RFC 5802/7677, as libpq's PQencryptPasswordConn).

    Sending the verifier instead of the password keeps the password out of the server's statement logs.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def ensure_login_roles(conn: asyncpg.Connection, passwords: Mapping[str, str]) -> list[str]:
    """Create or update the login role of each service in `passwords` (service → password); returns their names.

    Idempotent: an existing role gets the password again and stays a member of its group. Needs CREATEROLE
    (or a superuser), like the migration that makes the group roles.
    """
    done = []
    for service, password in passwords.items():
        group, role = SERVICE_ROLES[service], login_role(service)
        verifier = scram_verifier(password)
        # DDL takes no parameters; both names are fixed identifiers and the verifier is base64 and `$:`.
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        verb = "ALTER" if exists else "CREATE"
        await conn.execute(f"{verb} ROLE \"{role}\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                           f"PASSWORD '{verifier}'")  # fmt: skip
        await conn.execute(f'GRANT "{group}" TO "{role}"')
        done.append(role)
    return done
