"""End to end: a real two-site ``corridor up`` (two Ray clusters, vLLM CPU servers) with the openai SDK.

The corridor runs as its own process (``python -m serving.cli up``: an FR and a DE site process),
as in production, on a bundle that differs from the default in one point: ``fr-health`` may not
use ``minilm``. The Batch API at each tenant's home site; the two-site crisis drill (declared at
DE, approved at FR, German embeddings forwarded to FR and served there, both ledgers under one
decision id, reconciled and witnessed); a gateway SIGKILLed mid-batch and started again; the
FR site killed during crossings (503 ``peer_unavailable``, home traffic unaffected). Two starts,
a few minutes each on two cores.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from policies import default_bundle_path
from serving.gateway.auth import issuing_site

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3000)]

ROOT = Path(__file__).resolve().parents[2]
ENDED = ("completed", "failed", "cancelled", "expired")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def free_port_pair() -> int:
    """A port P with P and P + 1 (the two gateways) and P + 100, P + 101 (their peer APIs) free now.

    Drawn below the kernel's ephemeral range (32768 and up, where outgoing connections take
    their local ports) and above Ray's worker ports (10002-19999): the ports stay free until
    ``corridor up`` binds them, minutes later, while Ray opens many connections."""
    for _ in range(200):
        port = random.randrange(20000, 32600)
        if all(_free(p) for p in (port, port + 1, port + 100, port + 101)):
            return port
    raise RuntimeError("no free port range for the two sites")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Corridor:
    """``corridor up`` (two sites: FR on ``port``, DE on ``port + 1``) as a child process on ``home``."""

    def __init__(self, home: Path, bundle: Path) -> None:
        self.home, self.bundle = home, bundle
        self.port = free_port_pair()
        self.url = f"http://127.0.0.1:{self.port}"  # the FR site
        self.sites: dict[str, str] = {}
        self.process: subprocess.Popen | None = None
        self.keys: dict[str, str] = {}

    def start(self, timeout: float = 1200) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        log = (self.home / "up.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving.cli", "up", "--port", str(self.port), "--home", str(self.home),
             "--policy", str(self.bundle)], env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home)
        deadline = time.monotonic() + timeout
        for url in (self.url, f"http://127.0.0.1:{self.port + 1}"):
            while True:
                try:
                    with urllib.request.urlopen(url + "/healthz", timeout=2):
                        break
                except OSError:
                    if self.process.poll() is not None:
                        raise RuntimeError(f"corridor up exited; see {self.home / 'up.log'}") from None
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"corridor up not serving within {timeout:.0f} s") from None
                    time.sleep(2)
        self.keys = json.loads((self.home / "demo-keys.json").read_text("utf-8"))
        self.sites = {site: entry["url"] for site, entry in
                      json.loads((self.home / "sites.json").read_text("utf-8")).items()}

    def url_of(self, who: str) -> str:
        """The gateway of the site that issued ``who``'s key (the auditor's: FR, valid at both)."""
        return self.sites[issuing_site(self.keys[who]) or "FR"]

    def kill(self) -> None:
        """SIGKILL the gateway process, then reap what it left (Ray, vLLM) so nothing lingers."""
        assert self.process is not None
        left = _descendants(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self._reap(left)

    def stop(self) -> None:
        """Ctrl-C: the installation stops its replicas and Ray; reap anything left after that."""
        if self.process is None or self.process.poll() is not None:
            return
        left = _descendants(self.process.pid)
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(180)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
        self._reap(left + _descendants(self.process.pid))

    @staticmethod
    def _reap(pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.2)

    def sdk(self, who: str, **headers: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url_of(who) + "/v1", api_key=self.keys[who], max_retries=2,
                             timeout=120, default_headers=headers)

    def get(self, who: str, path: str, site: str | None = None) -> httpx.Response:
        base = self.sites[site] if site else self.url_of(who)
        return httpx.get(base + path, headers={"authorization": f"Bearer {self.keys[who]}"}, timeout=60)

    def ledger(self, tenant: str) -> list[dict]:
        """The tenant's entries in the ledger of its home site."""
        site = issuing_site(self.keys[f"{tenant}/app"])
        response = self.get("*/auditor", f"/audit/export?tenant={tenant}", site=site)
        response.raise_for_status()
        return [json.loads(line)["entry"] for line in response.text.splitlines() if line.strip()]

    def pool_of_nodes(self) -> dict[str, str]:
        """Every node of both sites' Ray clusters, with its pool."""
        found = {}
        for site in ("FR", "DE"):
            pools = self.get(f"{site}/operator", "/admin/pools").json()["pools"]
            found.update({node["node_id"]: pool["id"] for pool in pools for node in pool["nodes"]})
        return found


@pytest.fixture(scope="module")
def corridor(tmp_path_factory):
    home = tmp_path_factory.mktemp("corridor-home")
    bundle = yaml.safe_load(default_bundle_path().read_text("utf-8"))
    for tenant in bundle["tenants"]:
        if tenant["id"] == "fr-health":
            tenant["models"] = ["corridor-tiny"]  # may not use minilm: for the validation test
    path = home / "bundle.yaml"
    path.write_text(yaml.safe_dump(bundle, allow_unicode=True), "utf-8")
    installation = Corridor(home, path)
    try:
        installation.start()
        yield installation
    finally:
        installation.stop()


def chat_file(count: int, *, max_tokens: int = 16, prefix: str = "case") -> io.BytesIO:
    lines = [json.dumps({"custom_id": f"{prefix}-{n}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": "corridor-tiny", "max_tokens": max_tokens,
                                  "messages": [{"role": "user", "content": f"Résumez le dossier {n}"}]}})
             for n in range(count)]
    return io.BytesIO(("\n".join(lines) + "\n").encode())


def wait_for(client: openai.OpenAI, batch_id: str, timeout: float = 600, until=ENDED):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in until:
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status}: {batch}"
        time.sleep(0.5)


def result_lines(client: openai.OpenAI, batch) -> list[dict]:
    lines = []
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            lines += [json.loads(line) for line in client.files.content(file_id).text.splitlines()]
    return lines


def test_a_dr_batch_of_fr_interior_runs_only_in_paris_with_every_line_once(corridor):
    client = corridor.sdk("fr-interior/admin", **{"X-Corridor-Marking": "DR"})
    source = client.files.create(file=("cases.jsonl", chat_file(60)), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    batch = wait_for(client, batch.id)
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == 60 and batch.request_counts.failed == 0
    lines = result_lines(client, batch)
    assert Counter(line["custom_id"] for line in lines) == Counter(f"case-{n}" for n in range(60))
    for line in lines:
        body = line["response"]["body"]
        assert line["response"]["status_code"] == 200 and body["object"] == "chat.completion"
        assert body["usage"]["completion_tokens"] > 0
    assert batch.usage.output_tokens == sum(l["response"]["body"]["usage"]["completion_tokens"] for l in lines)
    entries = [e for e in corridor.ledger("fr-interior") if e["detail"].get("batch") == batch.id]
    assert entries, "no placement entry for the batch"
    assert len({e["detail"]["replica"] for e in entries}) == len(entries)  # once per replica, not per line
    nodes = corridor.pool_of_nodes()
    for entry in entries:
        assert (entry["kind"], entry["allowed"], entry["pool"], entry["jurisdiction"]) == (
            "placement", True, "fr-paris", "FR")
        assert entry["workload"] == {"kind": "batch", "model": "corridor-tiny", "marking": "DR",
                                     "data_flags": [], "resources": {"gpus": 0}}
        assert nodes[entry["node_id"]] == "fr-paris"  # where Ray says the node is
    assert "dossier" not in json.dumps(entries, ensure_ascii=False)


def test_a_line_naming_a_model_the_tenant_may_not_use_fails_validation(corridor):
    client = corridor.sdk("fr-health/admin")
    lines = [{"custom_id": f"e{n}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "minilm", "input": "compte rendu"}} for n in range(3)]
    source = client.files.create(file=("emb.jsonl", io.BytesIO("\n".join(map(json.dumps, lines)).encode())),
                                 purpose="batch")
    batch = wait_for(client, client.batches.create(input_file_id=source.id, endpoint="/v1/embeddings",
                                                   completion_window="24h").id, timeout=60)
    assert batch.status == "failed"
    assert [(e.code, e.line) for e in batch.errors.data] == [("model_not_allowed", n) for n in (1, 2, 3)]
    assert "MODEL_NOT_ALLOWED" in batch.errors.data[0].message
    assert batch.request_counts.total == 0 and batch.output_file_id is None


def test_a_tenant_cannot_read_another_tenants_files_or_batches(corridor):
    fr = corridor.sdk("fr-interior/admin")
    source = fr.files.create(file=("cases.jsonl", chat_file(2)), purpose="batch")
    batch = fr.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h")
    de = corridor.sdk("de-federal-it/admin")
    for call in (lambda: de.files.retrieve(source.id), lambda: de.files.content(source.id),
                 lambda: de.batches.retrieve(batch.id), lambda: de.batches.cancel(batch.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert batch.id not in [b.id for b in de.batches.list()]
    with pytest.raises(openai.PermissionDeniedError):
        corridor.sdk("fr-interior/app").batches.list()
    assert wait_for(fr, batch.id).status == "completed"


def test_cancel_stops_a_running_batch_and_accounts_for_every_line(corridor):
    client = corridor.sdk("fr-interior/admin")
    source = client.files.create(file=("cases.jsonl", chat_file(400, max_tokens=64)), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    deadline = time.monotonic() + 300
    while client.batches.retrieve(batch.id).request_counts.completed < 10:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert client.batches.cancel(batch.id).status in ("cancelling", "cancelled")
    batch = wait_for(client, batch.id)
    assert batch.status == "cancelled"
    counts = batch.request_counts
    assert counts.completed >= 10 and counts.failed > 0 and counts.completed + counts.failed == 400
    lines = result_lines(client, batch)
    assert Counter(line["custom_id"] for line in lines) == Counter(f"case-{n}" for n in range(400))


def operator(corridor, site: str, method: str, path: str, body: dict | None = None) -> dict:
    answer = httpx.request(method, corridor.sites[site] + path, json=body, timeout=60,
                           headers={"authorization": f"Bearer {corridor.keys[f'{site}/operator']}"})
    assert answer.status_code < 400, answer.text
    return answer.json()


def embed_at_home(corridor):
    """de-federal-it's VS-NfD embeddings, sent to its home site (DE), through the official SDK."""
    client = corridor.sdk("de-federal-it/app", **{"X-Corridor-Marking": "VS-NfD"})
    return client.embeddings.with_raw_response.create(model="minilm", input="Lagebericht")


def test_the_two_site_drill_crosses_only_under_a_declaration_held_by_both_sites(corridor):
    with pytest.raises(openai.InternalServerError) as before:
        embed_at_home(corridor)
    assert before.value.body["code"] == "no_replica_available"
    scope = {"tenants": ["de-federal-it"], "markings": ["VS-NfD"], "models": ["minilm"], "directions": ["DE->FR"]}
    declared = operator(corridor, "DE", "POST", "/admin/crisis", {"scope": scope, "reason": "e2e drill",
                                                                  "valid_for_hours": 1})
    deadline = time.monotonic() + 60
    while True:  # the signed declare step travels to FR over the peer link
        answer = httpx.get(f"{corridor.sites['FR']}/admin/crisis/{declared['id']}", timeout=30,
                           headers={"authorization": f"Bearer {corridor.keys['FR/operator']}"})
        if answer.status_code == 200:
            break
        assert time.monotonic() < deadline, "the declaration never reached FR"
        time.sleep(0.5)
    assert operator(corridor, "FR", "POST", f"/admin/crisis/{declared['id']}/approve")["status"] == "active"
    deadline = time.monotonic() + 60
    while operator(corridor, "DE", "GET", f"/admin/crisis/{declared['id']}")["status"] != "active":
        assert time.monotonic() < deadline, "FR's approval never reached DE"
        time.sleep(0.5)
    raw = embed_at_home(corridor)
    assert (raw.headers["x-corridor-site"], raw.headers["x-corridor-pool"]) == ("FR", "fr-paris")
    assert raw.headers["x-corridor-declaration"] == declared["id"]
    assert len(raw.parse().data[0].embedding) == 384  # a real vector, from the real minilm in Paris
    decision = raw.headers["x-corridor-decision"]
    both = {site: corridor.get("*/auditor", f"/audit/entries?decision_id={decision}", site=site).json()["data"]
            for site in ("FR", "DE")}
    (home,), (served,) = both["DE"], both["FR"]
    assert home["entry"]["detail"]["forwarded_to"] == "FR" and served["entry"]["detail"]["forwarded_from"] == "DE"
    assert home["entry"]["declaration"] == served["entry"]["declaration"] == declared["id"]
    operator(corridor, "FR", "POST", f"/admin/crisis/{declared['id']}/revoke")
    deadline = time.monotonic() + 60
    while operator(corridor, "DE", "GET", f"/admin/crisis/{declared['id']}")["status"] != "revoked":
        assert time.monotonic() < deadline, "the revocation never reached DE"
        time.sleep(0.5)
    with pytest.raises(openai.InternalServerError):
        embed_at_home(corridor)
    reconciled = subprocess.run([sys.executable, "-m", "serving.cli", "audit", "reconcile", "--home",
                                 str(corridor.home), "--key", corridor.keys["*/auditor"]],
                                capture_output=True, text=True, timeout=120)
    assert reconciled.returncode == 0 and "DE→FR: 1 forwarded, 1 served, 1 in both" in reconciled.stdout


def test_each_site_witnesses_the_other(corridor):
    deadline = time.monotonic() + 120
    for site in ("FR", "DE"):
        while not corridor.get("*/auditor", "/audit/witness", site=site).json()["data"]:
            assert time.monotonic() < deadline, f"{site} witnessed nothing"
            time.sleep(1)
    for site, peer in (("FR", "DE"), ("DE", "FR")):
        checked = subprocess.run([sys.executable, "-m", "serving.cli", "audit", "verify", "--peer",
                                  corridor.sites[peer], "--home", str(corridor.home / "sites" / site),
                                  "--key", corridor.keys["*/auditor"]], capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_batch_without_a_live_allowed_replica_gets_a_batch_replica_in_an_allowed_pool(corridor):
    """minilm serves the French tenants; VS-NfD embeddings must stay in de-frankfurt. After the
    drill: the batch replica it places gives DE embedding capacity at home until it is released."""
    client = corridor.sdk("de-federal-it/admin", **{"X-Corridor-Marking": "VS-NfD"})
    lines = [{"custom_id": f"v{n}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "minilm", "input": f"Vermerk {n}"}} for n in range(20)]
    source = client.files.create(file=("vs.jsonl", io.BytesIO("\n".join(map(json.dumps, lines)).encode())),
                                 purpose="batch")
    batch = wait_for(client, client.batches.create(input_file_id=source.id, endpoint="/v1/embeddings",
                                                   completion_window="24h").id, timeout=900)
    assert batch.status == "completed", batch
    vectors = [line["response"]["body"]["data"][0]["embedding"] for line in result_lines(client, batch)]
    assert len(vectors) == 20 and all(len(v) == 384 for v in vectors)
    entries = corridor.ledger("de-federal-it")
    used = [e for e in entries if e["detail"].get("batch") == batch.id]
    assert used and {(e["pool"], e["allowed"]) for e in used} == {("de-frankfurt", True)}
    placed = [e for e in entries if e["kind"] == "placement" and e["allowed"]
              and str(e["detail"].get("deployment", "")).startswith("batch-")]
    assert placed and {e["pool"] for e in placed} == {"de-frankfurt"}
    assert {e["detail"]["replica"] for e in used} <= {e["detail"]["replica"] for e in placed}


def test_a_gateway_killed_mid_batch_finishes_it_after_restart_with_every_line_once(corridor):
    client = corridor.sdk("fr-interior/admin")
    source = client.files.create(file=("cases.jsonl", chat_file(600, max_tokens=32, prefix="k")),
                                 purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    deadline = time.monotonic() + 300
    while client.batches.retrieve(batch.id).request_counts.completed < 50:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    corridor.kill()
    corridor.start()
    client = corridor.sdk("fr-interior/admin")
    batch = wait_for(client, batch.id, timeout=900)
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == 600 and batch.request_counts.failed == 0
    lines = result_lines(client, batch)
    assert Counter(line["custom_id"] for line in lines) == Counter(f"k-{n}" for n in range(600))
    entries = [e for e in corridor.ledger("fr-interior") if e["detail"].get("batch") == batch.id]
    assert len({e["node_id"] for e in entries}) == 2  # one replica before the kill, one after
    assert {e["pool"] for e in entries} == {"fr-paris"}


def test_with_the_fr_site_killed_a_crossing_is_503_peer_unavailable_and_de_serves_its_own(corridor):
    scope = {"tenants": ["de-federal-it"], "markings": ["VS-NfD"], "models": ["minilm"], "directions": ["DE->FR"]}
    declared = operator(corridor, "DE", "POST", "/admin/crisis", {"scope": scope, "reason": "e2e peer down",
                                                                  "valid_for_hours": 1})
    deadline = time.monotonic() + 60
    while httpx.get(f"{corridor.sites['FR']}/admin/crisis/{declared['id']}", timeout=30,
                    headers={"authorization": f"Bearer {corridor.keys['FR/operator']}"}).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    operator(corridor, "FR", "POST", f"/admin/crisis/{declared['id']}/approve")
    while operator(corridor, "DE", "GET", f"/admin/crisis/{declared['id']}")["status"] != "active":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert embed_at_home(corridor).headers["x-corridor-site"] == "FR"
    fr_site = [pid for pid in _descendants(corridor.process.pid)
               if "--site FR" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()]
    assert fr_site, "the FR site process"
    corridor._reap(fr_site[:1] + _descendants(fr_site[0]))
    with pytest.raises(openai.InternalServerError) as info:
        embed_at_home(corridor)
    assert info.value.body["code"] == "peer_unavailable"
    home = corridor.sdk("de-federal-it/app", **{"X-Corridor-Marking": "VS-NfD"}).chat.completions.with_raw_response.create(
        model="corridor-tiny", messages=[{"role": "user", "content": "Hallo"}], max_tokens=4)
    assert home.headers["x-corridor-site"] == "DE" and home.headers["x-corridor-pool"] == "de-frankfurt"
