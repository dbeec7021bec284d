"""Catch every attempt to reach a host outside loopback: audit hooks, and the kernel's socket tables.

Two independent detectors, so a test can assert "no egress" with teeth:

- :func:`install` adds a ``sys.addaudithook`` hook that sees every
  ``socket.connect``, ``socket.sendto``/``sendmsg`` and host-name lookup
  (``socket.getaddrinfo``, ``gethostbyname``) of a Python process, whether the
  connect succeeds or not, and records those aimed outside loopback. In this
  test process it records into memory (:class:`Monitor`); children get it
  through ``sitecustomize.py`` beside this file (put this directory on their
  ``PYTHONPATH`` and name a log file in ``CORRIDOR_EGRESS_LOG``).
- :func:`foreign_sockets` reads ``/proc/net/{tcp,tcp6,udp,udp6}`` and the
  ``/proc/<pid>/fd`` links of a process tree: every socket of the tree with a
  remote address outside loopback, including those of processes that are
  not Python (Ray's raylet and GCS server are C++).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import threading
from pathlib import Path

LOG_VARIABLE = "CORRIDOR_EGRESS_LOG"
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: object) -> bool:
    """True for loopback addresses and names; False for anything else (a name is not trusted).

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "localhost", "203.0.113.7", "example.org")]
    [True, True, True, True, False, False]
    """
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.strip("[]").split("%")[0].lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _own_names() -> set[str]:
    names = set(_LOCAL_NAMES)
    try:
        names.add(socket.gethostname().lower())
        names.add(socket.getfqdn().lower())
    except OSError:
        pass
    return names


class Monitor:
    """Records attempts outside loopback (``foreign``) and counts loopback connects (``loopback``)."""

    def __init__(self) -> None:
        self.active = False
        self.foreign: list[dict] = []
        self.loopback = 0
        self.own_names = _own_names()
        self._lock = threading.Lock()

    def record(self, event: str, target: object) -> None:
        with self._lock:
            self.foreign.append({"pid": os.getpid(), "event": event, "target": repr(target),
                                 "argv": " ".join(sys.argv[:3])})

    def __enter__(self) -> Monitor:
        self.foreign.clear()
        self.loopback = 0
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False


def _hook_for(monitor: Monitor):
    def hook(event: str, args: tuple) -> None:
        if not monitor.active or not event.startswith("socket."):
            return
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            sock, address = args[0], args[1] if len(args) > 1 else None
            family = getattr(sock, "family", None)
            if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
                return
            if is_loopback(address[0]):
                monitor.loopback += 1
            else:
                monitor.record(event, address)
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
            host = args[0] if args else None
            if isinstance(host, bytes):
                host = host.decode("ascii", "replace")
            if host is None or not isinstance(host, str):
                return
            try:
                ipaddress.ip_address(host.split("%")[0])
                return  # a literal address: no lookup leaves the machine
            except ValueError:
                pass
            if host.lower() not in monitor.own_names:
                monitor.record(event, host)
    return hook


_MONITOR: Monitor | None = None


def install() -> Monitor:
    """The process's one monitor, its audit hook added on first call (hooks cannot be removed)."""
    global _MONITOR
    if _MONITOR is None:
        _MONITOR = Monitor()
        sys.addaudithook(_hook_for(_MONITOR))
    return _MONITOR


def install_from_env() -> None:
    """In a child (via sitecustomize): monitor for the whole life of the process, appending what
    it finds to ``$CORRIDOR_EGRESS_LOG`` as JSON lines."""
    path = os.environ.get(LOG_VARIABLE)
    if not path:
        return
    monitor = install()
    monitor.active = True
    original = monitor.record

    def append(item: dict) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (json.dumps(item) + "\n").encode())
        finally:
            os.close(fd)

    def record(event: str, target: object) -> None:
        original(event, target)
        append(monitor.foreign[-1])

    monitor.record = record
    try:  # sys.argv is not final yet for `python -m module`; the kernel's copy is
        command = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = " ".join(sys.argv)
    append({"pid": os.getpid(), "event": "watching", "argv": command.strip()})


def _lines(path: str | Path) -> list[dict]:
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def read_log(path: str | Path) -> list[dict]:
    """The attempts children recorded (outside loopback)."""
    return [item for item in _lines(path) if item["event"] != "watching"]


def watched(path: str | Path) -> list[str]:
    """The command lines of the children that were watched (one line each, as they started)."""
    return [item["argv"] for item in _lines(path) if item["event"] == "watching"]


# -- the kernel's view ---------------------------------------------------------------------


def process_tree(root: int) -> set[int]:
    """``root`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, []))
    return found


def _socket_inodes(pids: set[int]) -> dict[int, int]:
    owners = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owners[int(link[8:-1])] = pid
    return owners


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:  # four little-endian 32-bit words
        ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return f"{ip}:{int(port, 16)}"


def foreign_sockets(root: int | None = None) -> list[dict]:
    """Sockets of ``root``'s process tree (default: this process) with a remote address that is
    set and outside loopback."""
    owners = _socket_inodes(process_tree(root or os.getpid()))
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote, inode = fields[2], int(fields[9])
            if inode not in owners:
                continue
            host = _address(remote).rsplit(":", 1)[0]
            if ipaddress.ip_address(host).is_unspecified or is_loopback(host):
                continue
            found.append({"pid": owners[inode], "table": table, "remote": _address(remote),
                          "state": fields[3]})
    return found


class SocketSampler:
    """Samples :func:`foreign_sockets` of this process tree every ``period_s`` in a thread."""

    def __init__(self, period_s: float = 0.05) -> None:
        self.period_s = period_s
        self.found: list[dict] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> SocketSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        root = os.getpid()
        while True:
            for item in foreign_sockets(root):
                if item not in self.found:
                    self.found.append(item)
            self.samples += 1
            if self._stop.wait(self.period_s):
                return
