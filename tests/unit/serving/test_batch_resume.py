"""A gateway killed (SIGKILL) mid-batch and started again finishes the batch, every line once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import openai
import pytest

from serving.gateway import KeyStore
from serving.loopback import free_port
from stub_upstream import ServerThread

from batch_stack import CountingStub, chat_lines, results, upload, wait_for

PROCESS = Path(__file__).with_name("batch_gateway_process.py")
ROOT = Path(__file__).resolve().parents[3]




def start_gateway(home: Path, port: int, keys: Path, upstream: str,
                  database: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, str(PROCESS), str(home), str(port), str(keys), upstream,
                                *([database] if database else [])], env=env)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            assert process.poll() is None, "the gateway process died"
            assert time.monotonic() < deadline, "the gateway process did not start"
            time.sleep(0.1)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_gateway_killed_mid_batch_resumes_it_after_restart_with_every_line_once(tmp_path, backend, request):
    database = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    keys = KeyStore(tmp_path / "keys.json")
    key = keys.issue("admin", tenant="fr-interior")
    stub = CountingStub("fr-paris", delay=0.05)
    port = free_port()
    with ServerThread(stub) as upstream:
        gateway = start_gateway(tmp_path, port, tmp_path / "keys.json", upstream.url, database)
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=2)
            batch = client.batches.create(input_file_id=upload(client, chat_lines(300)),
                                          endpoint="/v1/chat/completions", completion_window="24h")
            deadline = time.monotonic() + 30
            while client.batches.retrieve(batch.id).request_counts.completed < 60:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            gateway.send_signal(signal.SIGKILL)
            gateway.wait(10)
            partial = stub.requests
            assert partial < 300
            gateway = start_gateway(tmp_path, port, tmp_path / "keys.json", upstream.url, database)
            done = wait_for(client, batch.id, timeout=60)
            lines = results(client, done)
        finally:
            gateway.kill()
            gateway.wait(10)
    assert done.status == "completed"
    assert done.request_counts.model_dump() == {"total": 300, "completed": 300, "failed": 0}
    assert Counter(line["custom_id"] for line in lines) == Counter(f"req-{n}" for n in range(300))
    assert stub.requests >= 300  # lines in flight at the kill ran again; their answers count once
