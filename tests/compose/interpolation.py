"""Compose's variable interpolation (compose-spec, interpolation.md), for reading docker-compose.yml as compose
would on a machine without the compose plugin: `$$`, `$VAR`, `${VAR}`, and `${VAR<op>word}` with the
operators `:-` `-` (default), `:?` `?` (required, with a message) and `:+` `+` (alternative)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MissingVariableError", "interpolate", "references"]

_TOKEN = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<braced>\w+)(?:(?P<op>:?[-?+])(?P<word>[^}]*))?\}|(?P<bare>\w+))")


class MissingVariableError(ValueError):
    """A required variable (`${VAR:?message}`) is unset or empty: compose stops with the message."""


def _replace(match: re.Match[str], env: Mapping[str, str]) -> str:
    if match["dollar"]:
        return "$"
    name = match["braced"] or match["bare"]
    value, op, word = env.get(name), match["op"], match["word"] or ""
    unset_or_empty = value is None or (op is not None and op.startswith(":") and value == "")
    if op in {":-", "-"}:
        return word if unset_or_empty else str(value)
    if op in {":?", "?"}:
        if unset_or_empty:
            raise MissingVariableError(f"required variable {name} is missing a value: {word}")
        return str(value)
    if op in {":+", "+"}:
        return "" if unset_or_empty else word
    return value or ""


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """A copy of a loaded compose file with every string interpolated from `env`."""
    if isinstance(node, str):
        if re.search(r"\$\{(?!\w+(?::?[-?+][^}]*)?\})", node.replace("$$", "")):
            raise ValueError(f"an interpolation compose cannot read: {node!r}")
        return _TOKEN.sub(lambda m: _replace(m, env), node)
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    return node


def references(node: Any) -> list[tuple[str, str | None]]:
    """(variable, operator) of every interpolation in a loaded compose file, in order (`$$` is none)."""
    if isinstance(node, str):
        return [(m["braced"] or m["bare"], m["op"]) for m in _TOKEN.finditer(node) if not m["dollar"]]
    if isinstance(node, dict):
        return [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []
