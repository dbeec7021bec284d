"""``deploy/local/ray_cluster.py stop`` ends its own cluster's processes and nothing else (no Ray needed).

Stand-ins for ``ray start`` nodes: a shell leading a new session with a child,
like a raylet with its workers; a process outside that session stands for
another engineer's Ray cluster.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

import pytest

from deploy_manifests import REPO


def _script():
    spec = importlib.util.spec_from_file_location("corridor_local_ray_cluster", REPO / "deploy/local/ray_cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


local = _script()


@pytest.fixture
def processes():
    started = []

    def start(*args, **kwargs):
        process = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_stop_ends_the_sessions_of_its_nodes_and_their_children_only(tmp_path, processes) -> None:
    node = processes("sh", "-c", "sleep 60 & wait", start_new_session=True)
    other = processes("sleep", "60", start_new_session=True)
    directory = tmp_path / "c"
    directory.mkdir()
    local.ClusterState("127.0.0.1:1", str(directory), [local.NodeRecord("fr-paris", {}, 2, node.pid)]).save(directory)
    time.sleep(0.2)  # the shell has started its child
    state = local.ClusterState.load(directory)
    found = local.live_processes(state)
    assert node.pid in found and len(found) == 2 and other.pid not in found

    assert local.stop(directory, grace_s=5) == 2
    assert node.wait(timeout=5) is not None
    assert local.live_processes(state) == []
    assert other.poll() is None, "a process outside the cluster was stopped"


def test_processes_naming_the_clusters_temp_dir_are_the_clusters(tmp_path, processes) -> None:
    directory = tmp_path / "c"
    directory.mkdir()
    named = processes(sys.executable, "-c", "import time; time.sleep(60)", f"--session-dir={directory}/session_x")
    local.ClusterState("127.0.0.1:1", str(directory), []).save(directory)
    time.sleep(0.2)
    assert local.live_processes(local.ClusterState.load(directory)) == [named.pid]
    assert local.stop(directory, grace_s=5) == 1


def test_a_long_directory_is_refused_before_anything_starts(tmp_path) -> None:
    with pytest.raises(local.ClusterError, match="want at most 40"):
        local.start(tmp_path / ("x" * 60))
    assert not (tmp_path / ("x" * 60)).exists()
