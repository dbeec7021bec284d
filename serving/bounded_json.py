"""One JSON reader for everything a caller sends: request bodies and batch input lines.

``json.loads`` recurses once per nesting level, so a few kilobytes of ``[[[[…`` raise
:class:`RecursionError` deep inside whoever parses them. :func:`loads_bounded` answers
such input, and any other malformed JSON, with one :class:`JsonRejected` carrying a
stable ``code`` the caller can report (``invalid_json``, ``json_too_deep``).
"""

from __future__ import annotations

import json
from typing import Any

#: Nesting allowed in a body or batch line: far above any OpenAI request (tool schemas
#: included), far below what would strain the parser.
MAX_DEPTH = 64


class JsonRejected(ValueError):
    """Input that is not JSON, or nests deeper than allowed; ``code`` says which."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, counted up to ``limit + 1`` (then it stops).

    >>> depth({"a": [1, {"b": []}]}, 64)
    4
    >>> depth("text", 64)
    0
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        container, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        items = container.values() if isinstance(container, dict) else container
        stack.extend((item, level + 1) for item in items if isinstance(item, (dict, list)))
    return deepest


def loads_bounded(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` as JSON nested at most ``max_depth`` levels, or raise :class:`JsonRejected`.

    >>> loads_bounded(b'{"model": "m"}')
    {'model': 'm'}
    >>> loads_bounded("[" * 100 + "]" * 100)
    Traceback (most recent call last):
    ...
    serving.bounded_json.JsonRejected: JSON nested deeper than 64 levels
    """
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonRejected(f"JSON nested deeper than {max_depth} levels", "json_too_deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonRejected(f"malformed JSON: {exc}", "invalid_json") from exc
    if depth(value, max_depth) > max_depth:
        raise JsonRejected(f"JSON nested deeper than {max_depth} levels", "json_too_deep")
    return value
