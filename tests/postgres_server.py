"""A real PostgreSQL server for the tests and benchmarks, started from Debian's binaries.

:class:`PostgresServer` runs ``initdb`` into a temporary directory and ``postgres`` on a free
loopback port, trusting local connections (the data never leaves the test). PostgreSQL refuses
to run as root; as root (CI), the server runs as the ``postgres`` user that Debian's package
creates (``nobody`` without it), through ``setpriv``. The binaries are found on ``$PATH`` or in
``/usr/lib/postgresql/<version>/bin``; ``make postgres-deps`` installs them on a fresh machine.

    with PostgresServer() as server:
        url = server.create_database("ledger")   # postgresql://corridor@127.0.0.1:PORT/ledger

``stop(mode="immediate")`` and ``start()`` restart the same data directory (the tests of a
database that goes away under the gateway).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from serving.loopback import free_port

USER = "corridor"


def _unprivileged_user() -> str:
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return "nobody"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine, or the server did not start."""


def _bindir() -> Path:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, postgres): run `make postgres-deps` "
        "(apt-get install postgresql) or put them on $PATH")


class PostgresServer:
    """One throwaway PostgreSQL cluster on 127.0.0.1; a context manager."""

    def __init__(self, *, fsync: bool = False, max_connections: int = 200) -> None:
        """``fsync=False`` (tests): a committed transaction survives the server being killed
        (``synchronous_commit`` stays on), not the machine losing power; benchmarks pass True."""
        self.bindir = _bindir()
        self.fsync = fsync
        self.max_connections = max_connections
        self.port = free_port()
        self._root = Path(tempfile.mkdtemp(prefix="corridor-pg-"))
        self.datadir = self._root / "data"
        self._log = self._root / "server.log"
        self._process: subprocess.Popen | None = None
        self._run_as = _unprivileged_user() if os.geteuid() == 0 else None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        self.init()
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _command(self, *argv: str) -> list[str]:
        if self._run_as is None:
            return list(argv)
        return ["setpriv", f"--reuid={self._run_as}", f"--regid={self._run_as}", "--init-groups", *argv]

    def init(self) -> None:
        """``initdb`` the data directory (superuser ``corridor``, trust on loopback)."""
        if self._run_as is not None:
            group = self._run_as if self._run_as != "nobody" else "nogroup"
            subprocess.run(["chown", "-R", f"{self._run_as}:{group}", str(self._root)], check=True)
        result = subprocess.run(
            self._command(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", USER,
                          "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
            capture_output=True, text=True)
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({result.returncode}): {result.stderr.strip()}")

    def start(self, timeout: float = 30.0) -> None:
        """Start ``postgres`` and wait until it accepts connections."""
        log = open(self._log, "ab")
        self._process = subprocess.Popen(
            self._command(str(self.bindir / "postgres"), "-D", str(self.datadir),
                          "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.datadir),
                          "-c", f"fsync={'on' if self.fsync else 'off'}",
                          "-c", f"max_connections={self.max_connections}",
                          "-c", "shared_buffers=64MB"),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PostgresUnavailable(f"postgres exited ({self._process.returncode}): {self.log_tail()}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p",
                                    str(self.port), "-U", USER], capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise PostgresUnavailable(f"postgres did not accept connections in {timeout:.0f} s: {self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as a crash would, no checkpoint)."""
        if self._process is None or self._process.poll() is not None:
            return
        subprocess.run(self._command(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode,
                                     "-w", "stop"), capture_output=True)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def close(self) -> None:
        """Stop the server and remove its data."""
        self.stop("immediate")
        shutil.rmtree(self._root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- databases -------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (dropping one of that name) and return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
