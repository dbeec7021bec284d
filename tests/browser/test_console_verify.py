"""Verification in the browser: an entry verifies step by step; a tampered entry, proof or
signature fails at the step that catches it; the browser's canonical JSON and RFC 6962
code agree with the ledger's bytes and with the transparency-dev test vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from policies.canonical import canonical_json

pytestmark = pytest.mark.browser

STEPS = ["leaf", "path", "root", "key", "signature"]
VECTORS = Path(__file__).resolve().parents[1] / "testdata" / "rfc6962" / "inclusion"


def crossing_index(stack) -> int:
    """The index of a request that crossed under the active declaration."""
    items = stack.ledger.entries(kind="routing", limit=1000)["data"]
    return next(i["index"] for i in items if i["entry"]["declaration"] == stack.active_declaration)


def verify(page, index: int) -> tuple[str, dict[str, bool]]:
    """Open entry ``index``, press Verify, and return the verdict and each step's outcome."""
    page.go(f"/entry/{index}")
    page.wait("#verify").click()
    page.until(lambda d: page.wait("#verdict").get_attribute("data-result"))
    steps = {li.get_attribute("data-step"): li.get_attribute("data-ok") == "true"
             for li in page.find("#verify-steps li.step")}
    return page.wait("#verdict").get_attribute("data-result"), steps


def test_an_entry_opened_from_the_ledger_verifies_step_by_step(page, stack):
    index = crossing_index(stack)
    page.sign_in("*/auditor", "/ledger")
    page.wait(f'#entries tr[data-index="{min(index, 24)}"] a').click()
    page.wait("#verify")
    page.go(f"/entry/{index}")
    assert page.text("#declaration") == stack.active_declaration
    assert "Allowed" in page.text("#decision")
    result, steps = verify(page, index)
    assert result == "verified", page.text("#verdict")
    assert list(steps) == STEPS and all(steps.values())
    size = stack.ledger.latest_tree_head()["tree_size"]
    path = stack.ledger.inclusion_proof(index, size)["inclusion_path"]
    assert len(page.find("#verify-steps table.path tbody tr")) == len(path)
    assert page.text('li[data-step="root"]').count(stack.ledger.latest_tree_head()["root_hash"]) == 2
    page.shot("console-verify")


@pytest.mark.parametrize(("mode", "failed"), [
    ("entry", {"leaf", "root"}),
    ("entry+leaf", {"root"}),
    ("proof", {"root"}),
    ("signature", {"signature"}),
], ids=["an entry served with the opposite decision fails at its leaf hash and at the root",
        "a forged entry served with a matching leaf hash still fails at the root",
        "an altered inclusion path fails at the root",
        "a tree head with an altered signature fails at the signature"])
def test_what_was_tampered_with_fails_where_it_should(page, stack, mode, failed):
    index = crossing_index(stack)
    page.sign_in("*/auditor")
    stack.tamper.mode = mode
    result, steps = verify(page, index)
    assert result == "failed"
    assert {step for step, ok in steps.items() if not ok} == failed
    assert "FAILED" in page.text("#verdict")
    if mode == "entry":
        assert "Refused" in page.text("#decision"), "the page shows what was served; verification tells"
        page.shot("console-verify-tampered")


def test_a_pinned_key_id_catches_a_server_that_re_signs_with_its_own_key(page, stack):
    index = crossing_index(stack)
    page.sign_in("*/auditor")
    stack.tamper.mode = "resign"
    result, _ = verify(page, index)
    assert result == "verified", "without a pinned key, a consistent forgery of the key verifies"
    genuine = stack.ledger.public_key()["key_id"]
    page.wait("#pin").send_keys(genuine)
    result, steps = verify(page, index)
    assert result == "failed" and {s for s, ok in steps.items() if not ok} == {"key"}
    stack.tamper.mode = None
    result, _ = verify(page, index)
    assert result == "verified" and page.local_storage()["corridor.pinnedKeyId"] == genuine


CANONICAL_CASES = [
    {"valid_for_hours": 12.0, "b": 1, "a": [0.5, 1e-07, 1e+16, -0.0, 123456789012345]},
    {"marking": "RESTREINT UE", "é": "Ministère de l'Intérieur", "ü": "Universitätsklinikum", "z": None},
    {"control": "tab\there\nnew\u0001line\u001f\"quote\"\\slash", "emoji": "🇪🇺", "bool": [True, False]},
    {"nested": {"b": {"d": 1, "c": 2}, "a": []}, "ZZ": {}, "aa": "", "\u00e9": 1, "e": 2},
]


def test_the_browser_writes_the_same_canonical_bytes_as_the_ledger(page):
    served = [json.dumps(case, ensure_ascii=False, separators=(",", ":")) for case in CANONICAL_CASES]
    got = page.run_module("json.js", "return args[0].map((t) => m.canonicalJson(m.parseLossless(t)));", served)
    assert got == [canonical_json(case).decode("utf-8") for case in CANONICAL_CASES]


def test_the_browsers_inclusion_proofs_agree_with_the_rfc_6962_test_vectors(page):
    cases = []
    for path in sorted(VECTORS.glob("*/*.json")):
        case = json.loads(path.read_text())

        def hexed(value):
            return base64.b64decode(value).hex() if value is not None else ""

        cases.append({"name": str(path.relative_to(VECTORS)), "index": case["leafIdx"], "size": case["treeSize"],
                      "leaf": hexed(case["leafHash"]), "root": hexed(case["root"]),
                      "proof": [hexed(p) for p in case["proof"] or []], "wantErr": case["wantErr"]})
    assert len(cases) > 50
    results = page.run_module("merkle.js", """
        const out = [];
        for (const c of args[0]) {
          try {
            const root = await m.rootFromInclusionProof(c.index, c.size, m.fromHex(c.leaf), c.proof);
            out.push({name: c.name, ok: m.hex(root) === c.root});
          } catch (e) { out.push({name: c.name, ok: false, error: String(e)}); }
        }
        return out;""", cases)
    wrong = [r["name"] for r, c in zip(results, cases) if r["ok"] == c["wantErr"]]
    assert wrong == []
