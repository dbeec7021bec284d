"""The replica guard ends the server's whole process group when the actor dies."""

import os
import signal
import subprocess
import sys
import time

from serving.replica.guard import group_members

# A "server" that starts a grandchild, like vLLM's api_server starts its engine core.
SERVER = [sys.executable, "-c",
          "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
          "time.sleep(300)"]


def start_guarded(watch: int, command=SERVER, grace: float = 2.0) -> int:
    launcher = subprocess.Popen([sys.executable, "-m", "serving.replica.guard", "--watch", str(watch),
                                 "--grace", str(grace), "--", *command], start_new_session=True)
    launcher.wait(timeout=10)
    return launcher.pid  # the process group of guard, server and engine


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_dead_actor_takes_server_and_grandchildren_with_it():
    actor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    pgid = start_guarded(actor.pid)
    assert wait_for(lambda: len(group_members(pgid)) >= 3, 10), "guard, server and grandchild run"
    actor.kill()  # what ray.kill does to the actor process
    actor.wait()
    assert wait_for(lambda: not group_members(pgid), 10), f"left behind: {group_members(pgid)}"


def test_a_server_that_ignores_sigterm_is_killed_after_the_grace_period():
    actor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "time.sleep(300)"]
    pgid = start_guarded(actor.pid, stubborn, grace=1.0)
    assert wait_for(lambda: len(group_members(pgid)) >= 2, 10)
    actor.kill()
    actor.wait()
    assert wait_for(lambda: not group_members(pgid), 10)


def test_when_the_server_exits_the_guard_ends_the_group():
    pgid = start_guarded(os.getpid(), [sys.executable, "-c", "import subprocess, sys; "
                                       "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])"])
    assert wait_for(lambda: not group_members(pgid), 10)


def test_stopping_the_group_with_sigterm_stops_everything():
    pgid = start_guarded(os.getpid())
    assert wait_for(lambda: len(group_members(pgid)) >= 3, 10)
    os.killpg(pgid, signal.SIGTERM)
    assert wait_for(lambda: not group_members(pgid), 10)
