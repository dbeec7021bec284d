"""Relaying a server-sent event stream event by event, so the client only ever sees whole events.

Upstream chunks do not respect event boundaries: relayed as they come, a
replica that dies in the middle of ``data: {"choi`` leaves the client with half
an event, and an error event appended to it is unreadable
(``data: {"choidata: {"error": …}}``: the SDK raises ``JSONDecodeError``).
:class:`EventSplitter` holds back the bytes of an unfinished event; the relay
sends complete events, drops an unfinished one when the upstream breaks, and
then sends a well-formed error event the SDK turns into ``APIError``.

It also reads what the gateway needs from the stream: the token usage the
replica reports in its last event (for ``tokens_per_minute``), and it can drop
that usage-only event when the gateway asked for it and the client did not.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_TOTAL_TOKENS = re.compile(rb'"total_tokens"\s*:\s*(\d{1,12})')


def total_tokens(content: bytes) -> int | None:
    """The last ``"total_tokens": N`` of a JSON body or event (a key: JSON escapes the quotes of
    any string value), or None.

    >>> total_tokens(b'{"choices":[],"usage":{"prompt_tokens":3,"total_tokens":9}}')
    9
    >>> total_tokens(b'{"text":"\\\\"total_tokens\\\\": 5"}') is None
    True
    """
    last = None
    for last in _TOTAL_TOKENS.finditer(content):
        pass
    return int(last.group(1)) if last is not None else None


def is_usage_only(event: bytes) -> bool:
    """True for the usage-only event that ends a stream with ``include_usage`` (no choices)."""
    return b'"usage"' in event and re.search(rb'"choices"\s*:\s*\[\s*\]', event) is not None


def error_event(message: str, code: str) -> bytes:
    """A well-formed SSE error event in the OpenAI error shape.

    >>> error_event("gone", "upstream_stream_error")[:24]
    b'data: {"error": {"messag'
    """
    body: dict[str, Any] = {"error": {"message": message, "type": "server_error", "code": code,
                                      "param": None}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class EventSplitter:
    """Cuts a byte stream into whole events, each with its blank-line terminator.

    >>> splitter = EventSplitter()
    >>> splitter.feed(b'data: {"a"'), splitter.feed(b': 1}\\n\\ndata: [DO'), splitter.pending
    ([], [b'data: {"a": 1}\\n\\n'], 9)
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    @property
    def pending(self) -> int:
        """Bytes of an event not finished yet."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events ``chunk`` completes (possibly none)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        events = []
        start = 0
        for match in _BOUNDARY.finditer(buffer):
            events.append(buffer[start:match.end()])
            start = match.end()
        self._buffer = buffer[start:]
        return events

    def finish(self) -> bytes:
        """At the normal end of the stream: the rest, terminated if it was not (or b"")."""
        rest, self._buffer = self._buffer, b""
        if not rest.strip():
            return b""
        return rest if rest.endswith(b"\n\n") else rest.rstrip(b"\r\n") + b"\n\n"


class UsageRelay:
    """The whole events of a stream to relay, reading the token usage on the way (``used``);
    the usage-only event is dropped when ``hide_usage`` (only the gateway asked for it).

    >>> relay = UsageRelay(hide_usage=True)
    >>> relay.feed(b'data: {"choices":[{"delta":{}}]}\\n\\ndata: {"choices":[],"usage":{"total_tokens":9}}\\n\\n')
    [b'data: {"choices":[{"delta":{}}]}\\n\\n']
    >>> relay.used
    9
    """

    __slots__ = ("_splitter", "hide_usage", "used")

    def __init__(self, hide_usage: bool) -> None:
        self._splitter = EventSplitter()
        self.hide_usage = hide_usage
        self.used: int | None = None

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events ``chunk`` completes that the client gets."""
        relayed = []
        for event in self._splitter.feed(chunk):
            if b'"usage"' in event:
                self.used = total_tokens(event) or self.used
                if self.hide_usage and is_usage_only(event):
                    continue
            relayed.append(event)
        return relayed

    def finish(self) -> bytes:
        """At the normal end of the stream: the rest, terminated (or b"")."""
        return self._splitter.finish()
