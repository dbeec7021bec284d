"""Files, batches and line results as stored, and their OpenAI wire shapes.

The shapes follow the official SDK's ``openai.types.FileObject`` and
``openai.types.Batch``. A batch object carries one extension,
``corridor``: the marking and data flags fixed at creation, which apply to
every line. An output or error line reads::

    {"id": "batch_req_…", "custom_id": "…",
     "response": {"status_code": 200, "request_id": "…", "body": {…}} | null,
     "error": {"code": "…", "message": "…"} | null}
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

VALIDATING = "validating"
IN_PROGRESS = "in_progress"
FINALIZING = "finalizing"
COMPLETED = "completed"
FAILED = "failed"
CANCELLING = "cancelling"
CANCELLED = "cancelled"
EXPIRED = "expired"

#: Statuses in which the executor still has work: validate, run lines, or write the files.
ACTIVE = (VALIDATING, IN_PROGRESS, CANCELLING, FINALIZING)
TERMINAL = (COMPLETED, FAILED, CANCELLED, EXPIRED)

#: Endpoints a batch may target, and the body field each line's request must carry.
ENDPOINTS = {"/v1/chat/completions": "messages", "/v1/completions": "prompt",
             "/v1/embeddings": "input"}


#: Characters JSON leaves raw in strings but that many readers take for line breaks
#: (``str.splitlines``, JavaScript): escaped, so one output line is one result.
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(value: Any) -> str:
    r"""Compact JSON on exactly one line, non-ASCII text kept readable.

    >>> json_line({"text": "préfet\u2028"})
    '{"text":"préfet\\u2028"}'
    """
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_LINE_BREAKS)


def new_id(prefix: str) -> str:
    """A fresh object id, e.g. ``new_id("file-")`` → ``'file-3f9c…'`` (24 hex digits)."""
    return prefix + secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """An uploaded or generated file of one tenant; its bytes live in ``files/<id>.jsonl``."""

    id: str
    tenant: str
    filename: str
    purpose: str  # "batch" (uploaded) or "batch_output" (written by a batch)
    bytes: int
    created_at: int

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": None, "status_details": None}


@dataclass(frozen=True, slots=True)
class BatchError:
    """One reason a batch failed validation; ``line`` is 1-based in the input file."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "line": self.line, "param": self.param}


@dataclass(slots=True)
class BatchRecord:
    """A batch as stored: what was asked, its status, counts and timestamps (Unix seconds)."""

    id: str
    tenant: str
    input_file_id: str
    endpoint: str
    completion_window: str
    marking: str
    data_flags: tuple[str, ...]
    created_at: int
    expires_at: int
    status: str = VALIDATING
    metadata: dict[str, str] | None = None
    model: str | None = None
    ending: str | None = None  # CANCELLED or EXPIRED once decided; None to complete
    errors: list[BatchError] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None

    def to_openai(self) -> dict[str, Any]:
        """The ``Batch`` object of the OpenAI API, plus the ``corridor`` extension."""
        errors = ({"object": "list", "data": [e.to_json() for e in self.errors]}
                  if self.errors else None)
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "model": self.model,
            "errors": errors, "input_file_id": self.input_file_id,
            "completion_window": self.completion_window, "status": self.status,
            "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at, "in_progress_at": self.in_progress_at,
            "expires_at": self.expires_at, "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at, "failed_at": self.failed_at,
            "expired_at": self.expired_at, "cancelling_at": self.cancelling_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": {"total": self.total, "completed": self.completed,
                               "failed": self.failed},
            "usage": {"input_tokens": self.input_tokens,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": self.output_tokens,
                      "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": self.input_tokens + self.output_tokens},
            "metadata": self.metadata,
            "corridor": {"marking": self.marking, "data_flags": list(self.data_flags)},
        }


@dataclass(frozen=True, slots=True)
class LineResult:
    """The outcome of one input line: its output line and where it goes (``ok``: output file).

    ``input_tokens`` / ``output_tokens`` come from the response's ``usage``.
    """

    batch_id: str
    line: int
    text: str  # the output line, JSON, no trailing newline
    ok: bool
    input_tokens: int = 0
    output_tokens: int = 0

    @classmethod
    def response(cls, batch_id: str, line: int, custom_id: str, status_code: int,
                 body: bytes) -> LineResult:
        """A line the replica answered; a non-2xx answer goes to the error file.

        The body is embedded as JSON when it parses, else as a string; the
        ``request_id`` is the response's own id (e.g. ``chatcmpl-…``) when it has one.
        """
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            parsed = body.decode("utf-8", "replace")
        own_id = parsed.get("id") if isinstance(parsed, dict) else None
        request_id = own_id if isinstance(own_id, str) and own_id else new_id("req_")
        usage = parsed.get("usage") if isinstance(parsed, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        text = json_line({"id": new_id("batch_req_"), "custom_id": custom_id,
                          "response": {"status_code": status_code, "request_id": request_id,
                                       "body": parsed},
                          "error": None})
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return cls(batch_id, line, text, 200 <= status_code < 300,
                   prompt if isinstance(prompt, int) else 0,
                   completion if isinstance(completion, int) else 0)

    @classmethod
    def failure(cls, batch_id: str, line: int, custom_id: str, code: str, message: str) -> LineResult:
        """A line that got no answer: cancelled, expired, or no replica took it."""
        return cls(batch_id, line, failure_text(custom_id, code, message), False)


def failure_text(custom_id: str, code: str, message: str) -> str:
    """The error-file line of a request that got no response.

    >>> json.loads(failure_text("a", "batch_expired", "x"))["error"]
    {'code': 'batch_expired', 'message': 'x'}
    """
    return json_line({"id": new_id("batch_req_"), "custom_id": custom_id, "response": None,
                      "error": {"code": code, "message": message}})
