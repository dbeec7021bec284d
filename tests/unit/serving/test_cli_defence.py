"""``corridor crisis …`` against a live gateway, ``corridor policy keygen|sign|verify|pin``,
and ``corridor status``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from policies import default_bundle_path, load_bundle
from scheduler.ledger import Ledger, LedgerEntryDraft
from serving.cli import app

from defence_stack import defence_stack

runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()


def corridor(*args, **env):
    return runner.invoke(app, [str(a) for a in args], env={"CORRIDOR_API_KEY": None, **env})


@pytest.fixture
def stack(tmp_path):
    with defence_stack(tmp_path / "home") as stack:
        (stack.home / "demo-keys.json").write_text(json.dumps(
            {"FR/operator": stack.keys["FR/operator"], "DE/operator": stack.keys["DE/operator"]}))
        yield stack


class TestCrisisCommands:
    def test_the_drill_from_the_command_line(self, stack):
        common = ["--url", stack.url, "--home", stack.home]
        declared = corridor("crisis", "declare", "--as", "FR", "--tenant", "fr-interior", "--marking", "DR",
                            "--model", "corridor-tiny", "--direction", "fr-de", "--reason", "drill",
                            "--hours", "2", "--json", *common)
        assert declared.exit_code == 0, declared.output
        item = json.loads(declared.stdout)
        assert item["status"] == "pending" and item["scope"]["directions"] == ["FR->DE"]

        own = corridor("crisis", "approve", item["id"], "--as", "FR", *common)
        assert own.exit_code == 1 and "self_approval" in own.stderr

        approved = corridor("crisis", "approve", item["id"], "--as", "DE", *common)
        assert approved.exit_code == 0 and "active" in approved.stdout

        listed = corridor("crisis", "list", "--key", stack.keys["DE/operator"], "--url", stack.url)
        assert listed.exit_code == 0 and item["id"] in listed.stdout and "active" in listed.stdout
        assert stack.chat("fr-interior/app", "DR").headers["x-corridor-declaration"] == item["id"]

        revoked = corridor("crisis", "revoke", item["id"], "--url", stack.url,
                           CORRIDOR_API_KEY=stack.keys["DE/operator"])
        assert revoked.exit_code == 0 and "revoked" in revoked.stdout
        assert stack.chat("fr-interior/app", "DR").status_code == 503

    def test_without_a_key_or_with_an_unreachable_gateway_it_exits_2(self, stack, tmp_path):
        assert corridor("crisis", "list", "--url", stack.url, "--home", tmp_path).exit_code == 2
        unreachable = corridor("crisis", "list", "--url", "http://127.0.0.1:9", "--key", "cor_x_y")
        assert unreachable.exit_code == 2 and "cannot reach" in unreachable.stderr

    def test_a_400_shows_the_gateways_message(self, stack):
        result = corridor("crisis", "declare", "--as", "FR", "--home", stack.home, "--url", stack.url,
                          "--tenant", "fr-interior", "--marking", "DR", "--model", "corridor-tiny",
                          "--direction", "FR->DE", "--reason", "r", "--hours", "100")
        assert result.exit_code == 1 and "crisis_max_hours" in result.stderr


class TestPolicySigning:
    def test_keygen_sign_verify_and_a_tampered_bundle(self, tmp_path):
        home = tmp_path / "home"
        home.mkdir()
        generated = corridor("policy", "keygen", tmp_path / "fr.pem", "--name", "fr-ops", "--jurisdiction", "FR")
        assert generated.exit_code == 0, generated.output
        (home / "corridor.yaml").write_text(generated.stdout)
        bundle = tmp_path / "prod.yaml"
        bundle.write_bytes(default_bundle_path().read_bytes())
        unsigned = corridor("policy", "verify", bundle, "--home", home)
        assert unsigned.exit_code == 1 and "UNSIGNED" in unsigned.stderr
        assert corridor("policy", "sign", bundle, "--key", tmp_path / "fr.pem").exit_code == 0
        verified = corridor("policy", "verify", bundle, "--home", home)
        assert verified.exit_code == 0 and "signed by fr-ops (FR" in verified.stdout
        bundle.write_text(bundle.read_text() + "\n# later edit\n")
        tampered = corridor("policy", "verify", bundle, "--home", home)
        assert tampered.exit_code == 1 and "BAD_SIGNATURE" in tampered.stderr

    def test_an_invalid_bundle_is_not_signed(self, tmp_path):
        assert corridor("policy", "keygen", tmp_path / "k.pem", "--name", "x", "--jurisdiction", "DE").exit_code == 0
        bundle = tmp_path / "bad.yaml"
        bundle.write_text(default_bundle_path().read_text().replace("residency:", "residence:", 1))
        result = corridor("policy", "sign", bundle, "--key", tmp_path / "k.pem")
        assert result.exit_code == 1 and not (tmp_path / "bad.yaml.sig").exists()

    def test_pin_writes_each_artifacts_digest_and_turns_autarky_on(self, tmp_path):
        model = tmp_path / "tiny"
        model.mkdir()
        (model / "config.json").write_text("{}")
        out = tmp_path / "pinned.yaml"
        result = corridor("policy", "pin", default_bundle_path(), "--out", out, "--home", tmp_path,
                          "--model", f"corridor-tiny={model}")
        assert result.exit_code == 0, result.output
        bundle = load_bundle(out)
        digests = {m.id: m.digest for m in bundle.models}
        assert digests["corridor-tiny"].startswith("sha256:") and digests["minilm"].startswith("sha256:")
        assert bundle.settings.autarky


def test_status_reports_autarky_signer_digests_last_policy_change_and_crisis(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    generated = corridor("policy", "keygen", tmp_path / "fr.pem", "--name", "fr-ops", "--jurisdiction", "FR")
    (home / "corridor.yaml").write_text(generated.stdout)
    model = home / "models" / "corridor-tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    bundle = tmp_path / "prod.yaml"
    assert corridor("policy", "pin", default_bundle_path(), "--out", bundle, "--home", home).exit_code == 0
    assert corridor("policy", "sign", bundle, "--key", tmp_path / "fr.pem").exit_code == 0
    digest = load_bundle(bundle).digest()
    with Ledger.open(home) as ledger:
        for policy_digest in ("sha256:" + "0" * 64, digest, digest):
            ledger.append(LedgerEntryDraft(kind="policy", policy_digest=policy_digest, detail={
                "bundle": "corridor-default", "version": "2026.11", "path": str(bundle), "autarky": True,
                "signer": "fr-ops"}))
    result = corridor("status", "--home", home, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["autarky"] == {"last_start": True, "bundle_setting": True, "signer_at_start": "fr-ops"}
    assert report["signature"]["status"] == "valid" and report["signature"]["signer"] == "fr-ops"
    assert {m["model"]: m["state"] for m in report["models"]} == {
        "corridor-tiny": "match", "corridor-small": "match", "minilm": "match"}
    assert report["policy"]["digest"] == digest
    assert report["policy"]["changed_at_index"] == 1 and report["policy"]["last_start_index"] == 2
    text = corridor("status", "--home", home)
    assert text.exit_code == 0 and "signed by    fr-ops" in text.stdout and "match" in text.stdout

    (model / "extra.bin").write_bytes(b"swapped")
    report = json.loads(corridor("status", "--home", home, "--json").stdout)
    assert {m["model"]: m["state"] for m in report["models"]}["corridor-tiny"] == "MISMATCH"


def test_status_without_state_exits_2(tmp_path):
    assert corridor("status", "--home", tmp_path / "nothing").exit_code == 2


def test_status_counts_the_feed_that_corridor_yaml_names(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "corridor.yaml").write_text("security_events: {file: soc/feed.jsonl}\n")
    (home / "soc").mkdir()
    (home / "soc" / "feed.jsonl").write_text('{"a": 1}\n{"b": 2}\n')
    (home / "security-events.jsonl").write_text('{"stale": 1}\n')
    with Ledger.open(home) as ledger:
        ledger.append(LedgerEntryDraft(kind="policy", policy_digest="sha256:" + "0" * 64,
                                       detail={"path": str(default_bundle_path())}))
    report = json.loads(corridor("status", "--home", home, "--json").stdout)
    assert report["security_events"] == {"path": str(home / "soc" / "feed.jsonl"), "records": 2}
