"""Local ports: pick a free one, and wait until a server on one answers.

Used by the replica (its vLLM server's port), the local ``ray start`` cluster script,
the benchmarks and the tests, which all start servers on this machine.

>>> 1024 <= free_port() < 65536
True
"""

from __future__ import annotations

import socket
import time
import urllib.request


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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
