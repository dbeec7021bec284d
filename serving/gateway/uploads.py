"""Receiving a file upload (``multipart/form-data``) as a stream, with the size limit enforced while
reading and the file written straight to its staging path in ``$CORRIDOR_HOME``.

A form parsed whole before its size is checked lets any admin key fill the
disk (a body without ``Content-Length`` is spooled to the system's temporary
directory first). Here every chunk is counted as it arrives: past the limit
the upload stops with a 413 and the staged bytes are removed. Only the
``file`` part is kept on disk; other fields (``purpose``) are small and
bounded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from serving.gateway.errors import BadRequest, PayloadTooLarge

_FIELD_BYTES = 1024
_MAX_FIELDS = 8
_FORM_OVERHEAD = 64 * 1024  # part headers and boundaries around the file
_WRITE_BYTES = 1024 * 1024


@dataclass
class Upload:
    """What an upload carried: the file's name and size (its bytes are at the staging path),
    and the other form fields."""

    filename: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


class _Form:
    """The parser's callbacks: one file part to ``out``, small fields in memory."""

    def __init__(self, out: BinaryIO, limit: int) -> None:
        self.out, self.limit = out, limit
        self.upload = Upload()
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.ended = False
        self._header_field = b""
        self._header_value = b""
        self._disposition = b""
        self._part: str | None = None  # "file", a field name, or None
        self._value = b""
        self.seen_file = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._field,
                "on_header_value": self._hvalue, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done, "on_part_data": self._data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _begin(self) -> None:
        self._disposition, self._part, self._value = b"", None, b""

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == "file":
            if self.seen_file:
                raise BadRequest("send one file per upload", code="too_many_files", param="file")
            self.seen_file = True
            self.upload.filename = options.get(b"filename", b"input.jsonl").decode("utf-8", "replace")[:255]
            self._part = "file"
        else:
            if len(self.upload.fields) >= _MAX_FIELDS:
                raise BadRequest(f"at most {_MAX_FIELDS} form fields", code="too_many_fields")
            self._part = name[:64]

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part == "file":
            self.upload.size += end - start
            if self.upload.size > self.limit:
                raise PayloadTooLarge(f"the file exceeds the limit of {self.limit} bytes",
                                      code="file_too_large", param="file")
            self.pending.append(data[start:end])
            self.pending_bytes += end - start
        elif self._part is not None:
            self._value += data[start:end]
            if len(self._value) > _FIELD_BYTES:
                raise BadRequest(f"form field '{self._part}' exceeds {_FIELD_BYTES} bytes",
                                 code="field_too_large", param=self._part)

    def _part_end(self) -> None:
        if self._part not in (None, "file"):
            self.upload.fields[self._part] = self._value.decode("utf-8", "replace")

    def _end(self) -> None:
        self.ended = True

    async def flush(self) -> None:
        if self.pending:
            chunk, self.pending, self.pending_bytes = b"".join(self.pending), [], 0
            await asyncio.to_thread(self.out.write, chunk)


async def receive_upload(request: Request, staging: Path, limit: int) -> Upload:
    """Stream the request's form into ``staging`` (the ``file`` part) and return what it held.

    Raises 413 past ``limit`` bytes of file, 400 for a body that is not a complete
    ``multipart/form-data`` form with a ``file`` part; ``staging`` is removed on any error.
    """
    kind, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise BadRequest("send the file as multipart/form-data (fields 'file' and 'purpose')",
                         code="invalid_content_type")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _FORM_OVERHEAD:
        raise PayloadTooLarge(f"the upload of {declared} bytes exceeds the limit of {limit} bytes",
                              code="file_too_large", param="file")
    try:
        with staging.open("wb") as out:
            form = _Form(out, limit)
            try:
                parser = MultipartParser(boundary, form.callbacks())
            except (FormParserError, ValueError) as exc:
                raise BadRequest("malformed multipart boundary", code="invalid_multipart") from exc
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit + _FORM_OVERHEAD:
                    raise PayloadTooLarge(f"the upload exceeds the limit of {limit} bytes",
                                          code="file_too_large", param="file")
                try:
                    parser.write(chunk)
                except FormParserError as exc:
                    raise BadRequest("malformed multipart body", code="invalid_multipart") from exc
                if form.pending_bytes >= _WRITE_BYTES:
                    await form.flush()
            parser.finalize()
            await form.flush()
        if not form.ended:
            raise BadRequest("the multipart body ended before its closing boundary",
                             code="invalid_multipart")
        if not form.seen_file:
            raise BadRequest("missing the multipart field 'file'", code="missing_required_parameter",
                             param="file")
        return form.upload
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
