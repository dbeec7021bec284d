"""Two gateways on one PostgreSQL ledger: what one writes, the other's /audit API serves and proves."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import openai

from scheduler.ledger import merkle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "serving"))
from gateway_stack import gateway_stack  # noqa: E402


def audit(stack, path: str, **params) -> dict:
    response = httpx.get(stack.url + "/audit" + path, params=params,
                         headers={"Authorization": f"Bearer {stack.keys['*/auditor']}"})
    assert response.status_code == 200, response.text
    return response.json()


def chat(stack) -> str:
    raw = openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.keys["fr-interior/app"], max_retries=0) \
        .chat.completions.with_raw_response.create(model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
    return raw.headers["x-corridor-decision"]


def test_heads_and_proofs_of_two_gateways_on_one_ledger_agree(tmp_path: Path, postgres_url: str) -> None:
    with gateway_stack(tmp_path, database=postgres_url) as a, gateway_stack(tmp_path, database=postgres_url) as b:
        decision = chat(a)
        (item,) = audit(b, "/entries", decision_id=decision)["data"]  # b reads what a wrote
        head_b = audit(b, "/tree-head")
        assert head_b["tree_size"] > item["index"]
        assert audit(a, "/public-key") == audit(b, "/public-key")  # one site key
        proof = audit(a, "/proof/inclusion", index=item["index"], tree_size=head_b["tree_size"])
        merkle.verify_inclusion(item["index"], head_b["tree_size"], bytes.fromhex(item["leaf_hash"]),
                                [bytes.fromhex(h) for h in proof["inclusion_path"]], bytes.fromhex(head_b["root_hash"]))

        chat(b)
        head_a = audit(a, "/tree-head")  # a signs over what b appended since
        assert head_a["tree_size"] > head_b["tree_size"]
        consistency = audit(b, "/proof/consistency", first=head_b["tree_size"], second=head_a["tree_size"])
        merkle.verify_consistency(head_b["tree_size"], head_a["tree_size"],
                                  [bytes.fromhex(h) for h in consistency["consistency_path"]],
                                  bytes.fromhex(head_b["root_hash"]), bytes.fromhex(head_a["root_hash"]))
        assert a.ledger.verify().size == b.ledger.verify().size == head_a["tree_size"]


def test_metrics_are_scraped_while_the_ledger_database_is_down(tmp_path: Path) -> None:
    """On PostgreSQL the ledger's size is a query: with the database down, /metrics still answers
    (the size reads NaN), while an inference request is refused with 503 and Retry-After."""
    from tests.postgres_server import PostgresServer

    with PostgresServer() as server, gateway_stack(tmp_path, database=server.create_database("m")) as stack:
        chat(stack)
        operator = {"Authorization": f"Bearer {stack.keys['FR/operator']}"}
        assert "corridor_ledger_entries 1.0" in httpx.get(stack.url + "/metrics", headers=operator).text
        server.stop("immediate")
        scraped = httpx.get(stack.url + "/metrics", headers=operator, timeout=30)
        assert scraped.status_code == 200 and "corridor_ledger_entries NaN" in scraped.text
        refused = httpx.post(stack.url + "/v1/chat/completions", timeout=30,
                             headers={"Authorization": f"Bearer {stack.keys['fr-interior/app']}"},
                             json={"model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}]})
        assert refused.status_code == 503 and "Retry-After" in refused.headers, refused.text
        server.start()
