"""Limits on a request body, checked before anything parses it.

``json.loads`` recurses once per nesting level, so 5,000 nested arrays
raise ``RecursionError`` deep inside the parser; :func:`check_depth` finds
the depth with C-speed byte operations first and refuses such a body with a
400. :func:`read_body` stops reading at the size limit (413) instead of
buffering whatever a client sends.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from gateway import errors

#: A JSON string literal, escapes included: brackets inside strings do not nest.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _too_large(limit: int) -> errors.PayloadTooLarge:
    return errors.PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes")


async def read_body(content_length: str | None, chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, or :class:`errors.PayloadTooLarge` as soon as it passes ``limit`` bytes."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise _too_large(limit)
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _brackets(body: bytes) -> bytes:
    return _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)


def json_depth(body: bytes, stop_above: int) -> int:
    """Nesting depth of the arrays and objects in ``body`` (counting stops once past ``stop_above``)."""
    depth = deepest = 0
    for b in _brackets(body):
        if b in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_above:
                    break
        else:
            depth -= 1
    return deepest


def check_depth(body: bytes, limit: int) -> None:
    brackets = _brackets(body)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return  # cannot nest deeper than the brackets it opens: the common case, no Python loop
    if json_depth(brackets, limit) > limit:
        raise errors.InvalidRequest(
            f"the JSON body nests arrays and objects deeper than {limit} levels", code="json_too_deep"
        )
