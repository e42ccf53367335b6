"""Who may do what in the local stack: generated passwords, NATS users, Redis ACL users, service URLs."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from linkpulse.db.roles import SERVICE_ROLES, login_role
from linkpulse.messaging.permissions import SERVICE_USERS, SETUP_USER, permissions

__all__ = [
    "PASSWORDS_FILE",
    "REDIS_OPERATOR",
    "REDIS_USERS",
    "nats_authorization",
    "redis_acl",
    "stored_passwords",
    "with_userinfo",
]

PASSWORDS_FILE = "passwords.json"
REDIS_OPERATOR = "default"
"""Redis's own user, kept for the operator's tools (redis-cli, tests): it has every right, behind a password."""

# Key patterns and commands of each service's Redis user (ACL rules, Redis 6.2 and later). Redis cannot
# tell SET ... NX from a plain SET, so the redirect's fill may SET `link:*` keys; it cannot delete them,
# touch any other key, run scripts, or reconfigure the server. It also makes and reads the daily visitor
# salts (`visitor-salt:<date>`, SET NX with an expiry: linkpulse.redirect.visitor_keys), which no other
# service's user can read. The admin writes records through a script
# (EVALSHA, loaded with SCRIPT LOAD; the commands it runs are checked against the same rules) and keeps
# its failed-authentication throttle under `admin:auth-failures:*` (`linkpulse.admin.throttle.KEY_PREFIX`).
REDIS_USERS: dict[str, str] = {
    "redirect": "resetkeys ~link:* ~visitor-salt:* resetchannels -@all +get +set +ping",
    "admin": (
        "resetkeys ~link:* ~admin:auth-failures:* resetchannels -@all +get +set +del +exists +incr +incrby"
        " +expire +pexpire +ttl +pttl +multi +exec +eval +evalsha +script|load +script|exists +ping"
    ),
}


def stored_passwords(root: Path) -> dict[str, str]:
    """Passwords of every server user, `<server>/<user>` → password, created once and kept in `root`.

    The file is readable by this user only, like `admin_key`; a restarted stack keeps its passwords.
    """
    path = root / PASSWORDS_FILE
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = [
        *(f"nats/{user}" for user in (SETUP_USER, *SERVICE_USERS)),
        *(f"redis/{user}" for user in (REDIS_OPERATOR, *REDIS_USERS)),
        "postgres/postgres",
        *(f"postgres/{login_role(service)}" for service in SERVICE_ROLES),
    ]
    missing = [key for key in wanted if key not in stored]
    if missing:
        # URL-safe characters only: the passwords travel as URL userinfo and in config files unescaped.
        stored.update({key: secrets.token_urlsafe(24) for key in missing})
        path.touch(mode=0o600)
        path.write_text(json.dumps(stored, indent=2) + "\n")
    return stored


def nats_authorization(passwords: Mapping[str, str]) -> str:
    """The `authorization` block of nats.conf: the setup user may do anything, each service what it needs."""
    lines = ["authorization {", "  users = [", f'    {{user: "{SETUP_USER}", password: "{passwords[SETUP_USER]}"}}']
    for user in SERVICE_USERS:
        allowed = permissions(user)
        publish = ", ".join(f'"{s}"' for s in allowed.publish)
        subscribe = ", ".join(f'"{s}"' for s in allowed.subscribe)
        lines.append(
            f'    {{user: "{user}", password: "{passwords[user]}", permissions: '
            f"{{publish: {{allow: [{publish}]}}, subscribe: {{allow: [{subscribe}]}}}}}}"
        )
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def redis_acl(passwords: Mapping[str, str]) -> str:
    """An ACL file: the default user behind a password, and one narrowed user per service."""
    lines = [f"user {REDIS_OPERATOR} on >{passwords[REDIS_OPERATOR]} ~* &* +@all"]
    lines += [f"user {user} on >{passwords[user]} {rules}" for user, rules in REDIS_USERS.items()]
    return "\n".join(lines) + "\n"


def with_userinfo(url: str, user: str, password: str) -> str:
    """`url` with its user and password replaced (`nats://h:4222` → `nats://redirect:pw@h:4222`)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))
