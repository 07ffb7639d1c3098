"""Placeholder translation: :class:`~core.state.SqlStateManager` writes ``?``; drivers want other styles.

Only placeholders outside quoted text and quoted identifiers are translated; values are always bound.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def _tokens(sql: str) -> Iterator[tuple[str, bool]]:
    """Each character of ``sql`` with whether it sits inside a quoted literal or identifier."""
    quote_char = None
    for char in sql:
        if quote_char:
            yield char, True
            if char == quote_char:
                quote_char = None
        else:
            if char in ("'", '"', "`"):
                quote_char = char
                yield char, True
            else:
                yield char, False


def qmark_to_format(sql: str) -> str:
    """``?`` placeholders to psycopg2's ``%s`` (``%`` doubled), leaving quoted text and identifiers alone."""
    out = []
    for char, quoted in _tokens(sql):
        if char == "%":
            out.append("%%")
        elif char == "?" and not quoted:
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


def qmark_to_named(sql: str, params: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``?`` placeholders to SQLAlchemy ``text()`` binds (``:p0``, ``:p1``…); other colons are escaped."""
    out: list[str] = []
    values: dict[str, Any] = {}
    for char, quoted in _tokens(sql):
        if char == "?" and not quoted:
            name = f"p{len(values)}"
            values[name] = params[len(values)]
            out.append(f":{name}")
        elif char == ":":
            out.append("\\:")
        else:
            out.append(char)
    if len(values) != len(params):
        raise ValueError(f"{len(params)} parameters for {len(values)} placeholders")
    return "".join(out), values
