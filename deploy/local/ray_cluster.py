"""A real multi-process Ray cluster on this machine, started with ``ray start``.

One head (no pool labels, no GPUs) and one worker per pool of the policy
bundle, each labelled with the pool's node selector (``corridor.eu/pool``,
``corridor.eu/jurisdiction``) and declaring GPUs that need not exist — the
shape of a KubeRay cluster with one worker group per pool, on one machine::

    python deploy/local/ray_cluster.py start --dir /tmp/corridor-ray   # prints the address
    corridor up --ray-address <the printed address>
    python deploy/local/ray_cluster.py stop --dir /tmp/corridor-ray

Everything the cluster runs is scoped to its directory: Ray's temp dir is
``DIR``, every port is chosen free, and each ``ray start`` leads a session of
its own. ``stop`` ends only the processes of those sessions (and whatever
they spawned), never other Ray clusters on the machine — unlike a bare
``ray stop``. ``DIR`` must be short (Ray's socket paths live under it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script from the repository: the product's own helpers

from serving.loopback import free_port  # noqa: E402
STATE = "cluster.json"
#: Ray's unix socket paths (``DIR/session_<stamp>/sockets/plasma_store``) must stay under 108 bytes.
MAX_DIR_LENGTH = 40


@dataclass
class NodeRecord:
    """One ``ray start`` of the cluster: its name, labels, GPUs and the session it leads."""

    name: str
    labels: dict[str, str]
    gpus: int
    session: int  # the pid of `ray start`, leader of the session every process of the node shares


@dataclass
class ClusterState:
    """What ``start`` wrote to ``DIR/cluster.json`` and ``stop`` reads back."""

    address: str
    temp_dir: str
    nodes: list[NodeRecord] = field(default_factory=list)

    def save(self, directory: Path) -> None:
        (directory / STATE).write_text(json.dumps(asdict(self), indent=2) + "\n", "utf-8")

    @classmethod
    def load(cls, directory: Path) -> ClusterState:
        data = json.loads((directory / STATE).read_text("utf-8"))
        return cls(data["address"], data["temp_dir"], [NodeRecord(**n) for n in data["nodes"]])


class ClusterError(RuntimeError):
    """The local cluster could not be started or found."""




def _ray_cli() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise ClusterError(f"no `ray` command beside {sys.executable} or on PATH; install ray")
    return found


def pool_labels(bundle: Path | None = None) -> dict[str, dict[str, str]]:
    """Pool id → node labels (its node selector), from the bundle (default: the shipped one).

    >>> pool_labels()["fr-paris"]
    {'corridor.eu/pool': 'fr-paris', 'corridor.eu/jurisdiction': 'FR'}
    """
    sys.path.insert(0, str(REPO))
    from policies import Policy

    return {pool.id: dict(pool.node_selector) for pool in Policy.load(bundle).bundle.pools}


def _node_args(temp_dir: Path, *, cpus: int, gpus: int, object_store_mb: int) -> list[str]:
    return [f"--temp-dir={temp_dir}", f"--num-cpus={cpus}", f"--num-gpus={gpus}",
            f"--object-store-memory={object_store_mb * 1024 * 1024}",
            "--min-worker-port=0", "--max-worker-port=0",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--disable-usage-stats", "--log-style=record"]


def _ray_start(args: list[str], log: Path, env: dict[str, str]) -> int:
    """Run one ``ray start`` as the leader of a new session; return its pid (the session id)."""
    with log.open("ab") as out:
        process = subprocess.Popen([_ray_cli(), "start", *args], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        code = process.wait()
    if code != 0:
        raise ClusterError(f"`ray start {' '.join(args)}` exited {code}; see {log}")
    return process.pid


def start(directory: Path, *, bundle: Path | None = None, gpus: int = 2, cpus: int = 1,
          object_store_mb: int = 100) -> ClusterState:
    """Start the head and one labelled worker per pool; return the state (also saved in ``directory``)."""
    directory = directory.resolve()
    if len(str(directory)) > MAX_DIR_LENGTH:
        raise ClusterError(f"--dir {directory}: got {len(str(directory))} characters, want at most "
                           f"{MAX_DIR_LENGTH} (Ray's socket paths live under it), e.g. /tmp/corridor-ray")
    if (directory / STATE).exists() and live_processes(ClusterState.load(directory)):
        raise ClusterError(f"a cluster from {directory} is still running; stop it first")
    directory.mkdir(parents=True, exist_ok=True)
    pools = pool_labels(bundle)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    log = directory / "ray-start.log"
    state = ClusterState("", str(directory))
    try:
        head = ["--head", f"--port={free_port()}", "--include-dashboard=false",
                f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}",
                *_node_args(directory, cpus=cpus, gpus=0, object_store_mb=object_store_mb)]
        state.nodes.append(NodeRecord("head", {}, 0, _ray_start(head, log, env)))
        # Ray binds the machine's address, not loopback, and writes the one it chose here.
        state.address = (directory / "ray_current_cluster").read_text("utf-8").strip()
        state.save(directory)
        for pool, labels in pools.items():
            label_arg = ",".join(f"{k}={v}" for k, v in labels.items())
            worker = [f"--address={state.address}", f"--labels={label_arg}", "--include-log-monitor=false",
                      *_node_args(directory, cpus=cpus, gpus=gpus, object_store_mb=object_store_mb)]
            state.nodes.append(NodeRecord(pool, labels, gpus, _ray_start(worker, log, env)))
            state.save(directory)
    except BaseException:
        state.save(directory)  # a failed start's processes are still found by the temp dir they name
        stop(directory)
        raise
    return state


def _processes() -> dict[int, tuple[int, int, str]]:
    """Every process: pid → (parent pid, session id, command line)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] == "Z":
            continue  # a zombie holds no resources; its parent reaps it
        out[int(entry.name)] = (int(fields[1]), int(fields[3]), cmdline)
    return out


def live_processes(state: ClusterState) -> list[int]:
    """Pids of the cluster: in one of its sessions or naming its temp dir, and their descendants.

    Never this process or the ones that started it, whose command lines may name the directory.
    """
    table = _processes()
    ours, pid = set(), os.getpid()
    while pid in table and pid not in ours:
        ours.add(pid)
        pid = table[pid][0]
    sessions = {node.session for node in state.nodes}
    mine = {pid for pid, (_, sid, cmd) in table.items()
            if sid in sessions or state.temp_dir + "/" in cmd or f"={state.temp_dir} " in cmd + " "} - ours
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in mine} - mine - ours
        grew = bool(children)
        mine |= children
    return sorted(mine)


def stop(directory: Path, grace_s: float = 5.0) -> int:
    """End every process of the cluster in ``directory`` (SIGTERM, then SIGKILL); return how many."""
    directory = directory.resolve()
    if not (directory / STATE).exists():
        return 0
    state = ClusterState.load(directory)
    pids = live_processes(state)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and live_processes(state):
        time.sleep(0.2)
    for pid in live_processes(state):
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and live_processes(state):
        time.sleep(0.1)
    return len(pids)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/corridor-ray"),
                        help="Ray temp dir and state of this cluster (short path; default /tmp/corridor-ray)")
    parser.add_argument("--bundle", type=Path, help="policy bundle whose pools become workers")
    parser.add_argument("--gpus", type=int, default=2, help="GPUs each pool worker declares (default 2)")
    parser.add_argument("--remove", action="store_true", help="with stop: also delete --dir")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            state = start(args.dir, bundle=args.bundle, gpus=args.gpus)
            print(f"Ray cluster at {state.address}: head + {', '.join(n.name for n in state.nodes[1:])}")
            print(f"  corridor up --ray-address {state.address}")
            print(f"  python {Path(__file__).relative_to(REPO)} stop --dir {state.temp_dir}")
        elif args.command == "stop":
            print(f"stopped {stop(args.dir)} processes of the cluster in {args.dir}")
            if args.remove:
                shutil.rmtree(args.dir, ignore_errors=True)
        else:
            if not (args.dir / STATE).exists():
                print(f"no cluster in {args.dir}")
                return 1
            state = ClusterState.load(args.dir)
            pids = live_processes(state)
            print(f"{state.address}: {len(pids)} processes; nodes: "
                  f"{', '.join(n.name for n in state.nodes)}")
            return 0 if pids else 1
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
