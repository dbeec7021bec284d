"""Local ports: pick a free one, and wait until a server on one answers.

Used by the replica (its vLLM server's port), the local ``ray start`` cluster script,
the benchmarks and the tests, which all start servers on this machine.

>>> 1024 <= free_port() < 65536
True
"""

from __future__ import annotations

import random
import socket
import time
import urllib.request


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


SERVER_PORTS = range(20000, 32768)
"""Where a server that binds late (a vLLM replica binds about a minute after its port is
chosen) takes its port: below the kernel's ephemeral range (32768-60999 by default), where
every outgoing connection takes its local port, and above Ray's worker ports (10002-19999),
so neither can take the port in the meantime."""


def server_port(host: str = "127.0.0.1", ports: range = SERVER_PORTS) -> int:
    """A port of ``ports`` nothing listens on or is bound to at ``host`` right now, at random.

    >>> server_port() in SERVER_PORTS
    True
    """
    for _ in range(256):
        port = random.choice(ports)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {ports.start}-{ports.stop - 1} at {host} after 256 tries")


def wait_http(url: str, timeout: float, *, interval: float = 0.5) -> None:
    """Return once ``url`` answers any HTTP GET; :class:`TimeoutError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(interval)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
