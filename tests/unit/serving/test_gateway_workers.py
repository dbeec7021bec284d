"""Several gateway processes per site, the parts that need no database: the settings refuse
several workers without a shared database, ``corridor.yaml``'s ``database:`` and ``--database``
select it, the embedded corridor gives each site its own schema, the control process's worker
command, the 503 a database outage answers, and the worker's pass-through to the control process."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click.testing
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

import serving.cli.up
from scheduler.database import DatabaseUnavailable, schema_of, search_path_of, site_url
from serving.cli import load_command
from serving.config import ConfigError, load_run_config
from serving.gateway.errors import Unauthenticated, answer_errors
from serving.installation.control import control_url, worker_command, worker_sockets
from serving.installation.corridor import Corridor, CorridorConfig
from serving.installation.settings import UpConfig
from serving.installation.worker import ControlPassthrough
from tests.stub_upstream import ServerThread

URL = "postgresql://corridor@db.fr.internal:5432/corridor"


def run_up(monkeypatch, *args: str, env: dict[str, str] | None = None):
    started: list = []
    monkeypatch.setattr(serving.cli.up, "_site", started.append)
    monkeypatch.setattr(serving.cli.up, "_corridor", lambda *a: started.append(a))
    result = click.testing.CliRunner().invoke(load_command("up"), list(args), env=env or {})
    return result, started


def test_several_workers_without_a_database_are_refused_with_the_fix(monkeypatch, tmp_path):
    result, started = run_up(monkeypatch, "--site", "FR", "--home", str(tmp_path), "--gateway-workers", "2")
    assert result.exit_code == 2 and not started
    assert "need a shared" in result.output and "--database postgresql://" in result.output
    with pytest.raises(ValueError, match="need a shared database"):
        UpConfig(home=tmp_path, gateway_workers=2)


def test_one_worker_without_a_database_is_todays_site(monkeypatch, tmp_path):
    result, (config,) = run_up(monkeypatch, "--site", "FR", "--home", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert config.database is None and config.gateway_workers == 1


def test_the_database_comes_from_corridor_yaml_unless_the_option_names_another(monkeypatch, tmp_path):
    (tmp_path / "corridor.yaml").write_text(f"database: {URL}\n")
    result, (config,) = run_up(monkeypatch, "--site", "FR", "--home", str(tmp_path), "--gateway-workers", "2")
    assert result.exit_code == 0, result.output
    assert (config.database, config.gateway_workers) == (URL, 2)
    other = URL.replace("corridor@", "other@")
    result, (config,) = run_up(monkeypatch, "--site", "FR", "--home", str(tmp_path), "--database", other)
    assert config.database == other


def test_a_database_url_that_is_not_postgresql_is_refused_where_it_is_written(monkeypatch, tmp_path):
    result, started = run_up(monkeypatch, "--site", "FR", "--home", str(tmp_path), "--database", "mysql://x/y")
    assert result.exit_code == 2 and not started and "postgresql://" in result.output
    (tmp_path / "corridor.yaml").write_text("database: sqlite:///x.db\n")
    with pytest.raises(ConfigError, match="database"):
        load_run_config(None, tmp_path)


def test_each_site_of_the_embedded_corridor_gets_its_own_schema_and_the_worker_count(tmp_path):
    config = CorridorConfig(home=tmp_path, database=URL, gateway_workers=2)
    corridor = Corridor(config)
    schemas = {}
    for site in ("FR", "DE"):
        command = corridor._command(site)
        database = command[command.index("--database") + 1]
        schemas[site] = search_path_of(database)
        assert command[command.index("--gateway-workers") + 1] == "2"
    assert schemas == {"FR": "corridor_fr", "DE": "corridor_de"}
    assert "--database" not in Corridor(CorridorConfig(home=tmp_path))._command("FR")  # make up: SQLite


def test_a_site_url_keeps_the_callers_options_and_refuses_a_second_search_path():
    assert site_url(URL + "?sslmode=verify-full", "FR").startswith(URL + "?sslmode=verify-full&options=")
    assert schema_of("DE") == "corridor_de"
    with pytest.raises(ValueError, match="options= already"):
        site_url(URL + "?options=-csearch_path%3Dx", "FR")


def test_the_control_process_starts_workers_on_its_socket_with_its_site_and_control_port(tmp_path):
    config = UpConfig(home=tmp_path, port=9000, site="FR", database=URL, gateway_workers=3,
                      ledger_key=tmp_path / "key.pem")
    command = worker_command(config, 7)
    assert command[command.index("gateway") - 2:command.index("gateway") + 1] == ["-m", "serving.cli", "gateway"]
    options = {command[i]: command[i + 1] for i, arg in enumerate(command[:-1]) if arg.startswith("--")}
    assert options["--fd"] == "7" and options["--database"] == URL and options["--site"] == "FR"
    assert options["--control-url"] == control_url(config) == "http://127.0.0.1:9200"
    assert options["--ledger-key"] == str(tmp_path / "key.pem")
    assert control_url(dataclasses.replace(config, control_port=9999)) == "http://127.0.0.1:9999"


def _app_raising(exc: Exception) -> FastAPI:
    app = FastAPI()
    answer_errors(app)

    @app.get("/v1/models")
    async def models():
        raise exc

    return app


def test_a_database_outage_is_a_503_with_retry_after_in_the_openai_error_format():
    app = _app_raising(DatabaseUnavailable("connection refused"))
    with TestClient(app) as client:
        answer = client.get("/v1/models")
    assert answer.status_code == 503
    assert int(answer.headers["retry-after"]) > 0
    error = answer.json()["error"]
    assert error["code"] == "database_unavailable" and error["type"] == "service_unavailable"
    assert "connection refused" not in error["message"]  # no server detail to the caller


def test_control_requests_pass_through_whole_bad_credentials_stop_at_the_worker_no_control_process_is_a_503():
    seen: list[tuple[str, str, str | None, bytes]] = []
    control = FastAPI()

    @control.api_route("/admin/deployments/{name}", methods=["PATCH"])
    async def patch(name: str, request: Request):
        seen.append((request.method, name, request.headers.get("authorization"), await request.body()))
        return {"name": name, "replicas": 3}

    inner = FastAPI()

    @inner.get("/v1/models")
    async def models():
        return {"served": "by the worker"}

    with ServerThread(control) as server:
        app = ControlPassthrough(inner, server.url)
        with TestClient(app) as client:
            answer = client.patch("/admin/deployments/chat?dry_run=false", json={"replicas": 3},
                                  headers={"Authorization": "Bearer cor_x_y"})
            assert answer.status_code == 200 and answer.json() == {"name": "chat", "replicas": 3}
            assert seen == [("PATCH", "chat", "Bearer cor_x_y", b'{"replicas":3}')]
            assert client.get("/v1/models").json() == {"served": "by the worker"}
    def admit(request: Request) -> None:
        if request.headers.get("authorization") != "Bearer cor_x_y":
            raise Unauthenticated("invalid API key or token", code="invalid_api_key")

    with ServerThread(control) as server, TestClient(ControlPassthrough(inner, server.url, admit=admit)) as client:
        refused = client.get("/admin/deployments/chat", headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401 and len(seen) == 1  # refused here, the control process never asked
    with TestClient(ControlPassthrough(inner, "http://127.0.0.1:9")) as client:
        away = client.get("/admin/pools")
        assert away.status_code == 503 and away.headers["retry-after"]
        assert away.json()["error"]["code"] == "control_unavailable"
        assert client.get("/v1/models").status_code == 200  # the request path goes on


def test_the_worker_sockets_share_one_port_and_the_kernel_spreads_connections_over_them():
    import socket

    sockets = worker_sockets("127.0.0.1", 0, 1)
    port = sockets[0].getsockname()[1]
    sockets[0].close()
    sockets = worker_sockets("127.0.0.1", port, 2)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        accepted = []
        for sock in sockets:
            assert sock.get_inheritable() and sock.getsockname()[1] == port
            sock.setblocking(False)
            count = 0
            while True:
                try:
                    sock.accept()[0].close()
                    count += 1
                except BlockingIOError:
                    break
            accepted.append(count)
        assert sum(accepted) == 40 and min(accepted) >= 8, accepted  # both take a share
    finally:
        for sock in [*sockets, *clients]:
            sock.close()


def test_a_worker_that_dies_is_started_again_and_its_socket_is_closed_at_once():
    import os
    import signal
    import socket
    import sys
    import time

    from serving.installation.control import WorkerSupervisor, listening_socket

    (probe,) = worker_sockets("127.0.0.1", 0, 1)
    port = probe.getsockname()[1]
    probe.close()

    def command(fd: int) -> list[str]:  # a stand-in worker: answers one connection on its socket
        return [sys.executable, "-c", f"import socket, time; s = socket.socket(fileno={fd}); "
                                      f"c, _ = s.accept(); c.sendall(b'ok'); time.sleep(60)"]

    supervisor = WorkerSupervisor(command, lambda: listening_socket("127.0.0.1", port, reuse_port=True),
                                  1).start()
    try:
        (first,) = supervisor.pids()
        (old_socket,) = supervisor.sockets
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while supervisor.pids() in ([], [first]):
            assert time.monotonic() < deadline, "no worker started in the dead one's place"
            time.sleep(0.1)
        assert old_socket.fileno() == -1  # closed: nothing waits on a socket nobody accepts on
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert client.recv(2) == b"ok"  # the new worker serves the port on its new socket
    finally:
        supervisor.stop(timeout_s=2)


def test_a_gateway_worker_loads_neither_ray_nor_vllm():
    import subprocess
    import sys

    probe = ("import sys, serving.cli.gateway, serving.installation.worker; "
             "print(sorted(m for m in ('ray', 'vllm', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3]).stdout
    assert out.strip() == "[]"
