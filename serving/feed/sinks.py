"""Where security records go: a JSON-lines file and, optionally, syslog.

The file (``$CORRIDOR_HOME/security-events.jsonl`` unless ``corridor.yaml``
names another) gets one ``write`` per record on an ``O_APPEND`` descriptor, so
the gateway and ``corridor audit verify`` can both append. Syslog gets RFC 5424
messages (facility 10, security/authorization; severity from ``severity_id``;
MSG the record as ASCII JSON) over UDP (one datagram each, RFC 5426) or TCP
(octet-counting framing, RFC 6587). A syslog outage never slows the gateway:
records queue in memory (bounded) and are dropped, and counted, when it stays
down.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

_SYSLOG_FACILITY = 10  # security/authorization messages
_SYSLOG_SEVERITY = {0: 6, 1: 6, 2: 5, 3: 4, 4: 3, 5: 2, 6: 1}  # OCSF severity_id -> RFC 5424


class FileSink:
    """Appends one JSON line per record to a file; safe across threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def rfc5424(record: Mapping[str, Any], *, hostname: str | None = None,
            app_name: str = "corridor", procid: int | None = None) -> bytes:
    """The RFC 5424 message of a record: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG``.

    MSGID is the OCSF class without spaces (``DetectionFinding``); MSG the record
    as JSON with non-ASCII escaped, so it is plain ASCII and needs no BOM.
    """
    pri = _SYSLOG_FACILITY * 8 + _SYSLOG_SEVERITY.get(int(record.get("severity_id", 0)), 6)
    at = dt.datetime.fromtimestamp(record["time"] / 1000, dt.timezone.utc)
    timestamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = _printable(hostname or socket.gethostname(), 255)
    msgid = _printable(str(record.get("class_name", "-")).replace(" ", "").replace("&", ""), 32)
    message = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    header = f"<{pri}>1 {timestamp} {host} {_printable(app_name, 48)} {procid or os.getpid()} {msgid} -"
    return f"{header} {message}".encode("ascii")


def _printable(value: str, limit: int) -> str:
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


class SyslogSink:
    """Sends records as RFC 5424 messages to ``udp://host:port`` or ``tcp://host:port``.

    Sending happens in a daemon thread; at most ``max_queue`` records wait.
    ``dropped`` counts records lost to a full queue or a target that stays down.
    """

    def __init__(self, url: str, *, max_queue: int = 10_000, hostname: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("udp", "tcp") or not parts.hostname or parts.port is None:
            raise ValueError(f"syslog: got {url!r}, want udp://HOST:PORT or tcp://HOST:PORT")
        self.url = url
        self.transport, self.address = parts.scheme, (parts.hostname, parts.port)
        self.hostname = hostname
        self.dropped = 0
        self.sent = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_queue)
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._loop, name="corridor-syslog", daemon=True)
        self._thread.start()

    def write(self, record: Mapping[str, Any]) -> None:
        try:
            self._queue.put_nowait(rfc5424(record, hostname=self.hostname))
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every queued record was sent or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.flush()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()

    def _loop(self) -> None:
        while True:
            message = self._queue.get()
            try:
                if message is None:
                    return
                self._send(message)
            finally:
                self._queue.task_done()

    def _send(self, message: bytes) -> None:
        for attempt in range(2):
            try:
                if self._sock is None:
                    self._sock = self._connect()
                if self.transport == "udp":
                    self._sock.send(message)
                else:
                    self._sock.sendall(str(len(message)).encode("ascii") + b" " + message)
                self.sent += 1
                return
            except OSError as exc:
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                if attempt:
                    self.dropped += 1
                    log.warning("syslog %s: record dropped (%s)", self.url, exc)

    def _connect(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        sock = socket.socket(family, kind)
        sock.settimeout(2.0)
        sock.connect(self.address)
        return sock


class SecurityFeed:
    """Where security records go: the JSON-lines file and, if configured, syslog."""

    def __init__(self, path: str | Path, *, syslog: str | None = None) -> None:
        self.path = Path(path)
        self.sinks: list[Any] = [FileSink(self.path)]
        self.syslog = SyslogSink(syslog) if syslog else None
        if self.syslog is not None:
            self.sinks.append(self.syslog)
        self.emitted = 0

    def emit(self, record: Mapping[str, Any]) -> None:
        """Write one record to every sink; a failing sink never raises into the caller."""
        self.emitted += 1
        for sink in self.sinks:
            try:
                sink.write(record)
            except Exception:  # noqa: BLE001 - the feed must never break serving
                log.exception("security feed: %s failed", type(sink).__name__)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
