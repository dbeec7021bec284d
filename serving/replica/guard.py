"""Keeps a replica's server from outliving its Ray actor.

Ray kills an actor's direct children when the actor dies, but not their
children: vLLM's engine processes would survive, holding memory and cores.
So the replica does not start the server itself; it starts this guard in a
new process group. The guard detaches (double fork: Ray no longer sees it as
a child), starts the server in its group, and watches two processes: the
actor and the server. When either is gone it sends SIGTERM to the whole
group, waits up to ``--grace`` seconds for every member to exit, then sends
SIGKILL.

Run: ``python -m serving.replica.guard --watch ACTOR_PID [--grace S] -- COMMAND...``
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def group_members(pgid: int) -> list[int]:
    """Pids of live processes in process group ``pgid`` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def guard(watch: int, command: list[str], grace: float) -> None:
    """In the detached child: run ``command``, then end the group when ``watch`` or it dies."""
    server = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # outlive the group's SIGTERM to escalate
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while alive(watch) and server.poll() is None:
        time.sleep(0.5)
    pgid, me = os.getpgrp(), os.getpid()
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        server.poll()
        if not [pid for pid in group_members(pgid) if pid != me]:
            return
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a server that dies with the process it serves.")
    parser.add_argument("--watch", type=int, required=True, help="pid whose death ends the server")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the server command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the server command after --")
    if os.fork() > 0:  # the launcher returns at once; the guard lives on, reparented
        os._exit(0)
    guard(args.watch, command, args.grace)


if __name__ == "__main__":
    main(sys.argv[1:])
