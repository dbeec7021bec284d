"""Tampering with the stored log or with an export is detected, with the first bad index.

The stored log is changed through the real SQLite file, with ``sqlite3``
directly, as an intruder with write access to the disk would, or in PostgreSQL
by a superuser who switches the append-only triggers off; exports are changed
line by line. Each case is checked through :func:`verify_log` /
:func:`verify_export` and through ``corridor audit verify`` (exit status 1).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from ledger_backends import BACKENDS, ledger_database
from policies.canonical import canonical_json
from scheduler.ledger import Ledger, LedgerEntryDraft, LedgerReader, VerificationError, verify_export
from scheduler.ledger.signing import PublicKey, sign_tree_head

ROOT = Path(__file__).resolve().parents[3]


def load_audit_cli():
    """``serving/cli/audit.py`` loaded by path, so these tests do not depend on the rest of the CLI package."""
    path = ROOT / "serving" / "cli" / "audit.py"
    spec = importlib.util.spec_from_file_location("corridor_audit_cli_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


audit = load_audit_cli()
runner = CliRunner()

SIZE = 21
FIRST_HEAD = 10


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Site(NamedTuple):
    """Where a ledger lives: its home (signing key; ledger.db on SQLite) and its PostgreSQL database."""

    home: Path
    database: str | None

    def options(self) -> list[str]:
        """The ``corridor audit`` options that name this ledger."""
        return ["--home", str(self.home), *(["--database", self.database] if self.database else [])]

    def reader(self) -> LedgerReader:
        return LedgerReader.open(self.home, database=self.database)


@pytest.fixture(params=BACKENDS)
def home(tmp_path: Path, request: pytest.FixtureRequest) -> Site:
    """A closed ledger of 21 entries with tree heads at sizes 10 and 21."""
    site = Site(tmp_path, ledger_database(request, request.param))
    with Ledger.open(tmp_path, database=site.database) as ledger:
        drafts = [
            LedgerEntryDraft(kind="placement", tenant=["acme", "bund"][i % 2], jurisdiction="FR", allowed=True,
                             reasons=["OK"], detail={"seq": i})
            for i in range(SIZE)
        ]
        ledger.append_many(drafts[:FIRST_HEAD])
        ledger.latest_tree_head()
        ledger.append_many(drafts[FIRST_HEAD:])
    return site


class QmarkConnection:
    """A psycopg connection that takes the ``?`` placeholders of the changes below."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, params: tuple = ()) -> psycopg.Cursor:
        return self.connection.execute(sql.replace("?", "%s"), params)


def tamper(site: Site, change: Callable[[sqlite3.Connection], None]) -> None:
    if site.database is not None:
        with psycopg.connect(site.database) as connection:
            connection.execute("SET session_replication_role = replica")  # a superuser's way past the triggers
            change(QmarkConnection(connection))
        return
    connection = sqlite3.connect(site.home / "ledger.db")
    for table in ("entries", "tree_heads"):
        for op in ("update", "delete"):
            connection.execute(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
    change(connection)
    connection.commit()
    connection.close()


def row(connection: sqlite3.Connection, index: int) -> tuple:
    return connection.execute(
        "SELECT leaf, leaf_hash, subtrees, tenant, kind, jurisdiction, ts FROM entries WHERE idx = ?", (index,)
    ).fetchone()


def flip_one_byte(c: sqlite3.Connection) -> None:
    leaf = bytearray(row(c, 5)[0])
    leaf[leaf.index(b'"tenant":"') + 10] ^= 0x01
    c.execute("UPDATE entries SET leaf = ? WHERE idx = 5", (bytes(leaf),))


def rewrite_with_hash(index: int) -> Callable[[sqlite3.Connection], None]:
    def change(c: sqlite3.Connection) -> None:
        entry = json.loads(row(c, index)[0])
        entry["allowed"] = False
        leaf = canonical_json(entry)
        c.execute("UPDATE entries SET leaf = ?, leaf_hash = ? WHERE idx = ?", (leaf, _sha256(b"\x00" + leaf), index))

    return change


def delete_entry(c: sqlite3.Connection) -> None:
    c.execute("DELETE FROM entries WHERE idx = 7")


def swap_entries(c: sqlite3.Connection) -> None:
    three, eleven = row(c, 3), row(c, 11)
    columns = "leaf = ?, leaf_hash = ?, subtrees = ?, tenant = ?, kind = ?, jurisdiction = ?, ts = ?"
    c.execute(f"UPDATE entries SET {columns} WHERE idx = 3", (*eleven,))
    c.execute(f"UPDATE entries SET {columns} WHERE idx = 11", (*three,))


def insert_entry(c: sqlite3.Connection) -> None:
    # A forged entry at 9 that is consistent on its own: right index, leaf hash and subtree hash.
    eight, nine = row(c, 8), row(c, 9)
    c.execute("UPDATE entries SET idx = -idx - 1 WHERE idx >= 9")
    c.execute("UPDATE entries SET idx = -idx WHERE idx < 0")
    entry = json.loads(nine[0]) | {"tenant": "intruder"}
    leaf = canonical_json(entry)
    leaf_hash = _sha256(b"\x00" + leaf)
    subtrees = _sha256(b"\x01" + eight[1] + leaf_hash)
    c.execute("INSERT INTO entries VALUES (9, ?, ?, ?, 'intruder', ?, ?, ?)", (leaf, leaf_hash, subtrees, *nine[4:]))


def truncate(c: sqlite3.Connection) -> None:
    c.execute("DELETE FROM entries WHERE idx >= 15")


def forge_signature(c: sqlite3.Connection) -> None:
    (signature,) = c.execute("SELECT signature FROM tree_heads WHERE tree_size = ?", (FIRST_HEAD,)).fetchone()
    raw = bytearray(base64.b64decode(signature))
    raw[7] ^= 0x80
    c.execute("UPDATE tree_heads SET signature = ? WHERE tree_size = ?", (base64.b64encode(raw).decode(), FIRST_HEAD))


def resign_with_another_key(c: sqlite3.Connection) -> None:
    tree_size, root_hash, timestamp = c.execute(
        "SELECT tree_size, root_hash, timestamp FROM tree_heads WHERE tree_size = ?", (FIRST_HEAD,)
    ).fetchone()
    head = sign_tree_head(Ed25519PrivateKey.generate(), tree_size, bytes.fromhex(root_hash), timestamp)
    c.execute(
        "UPDATE tree_heads SET key_id = ?, signature = ? WHERE tree_size = ?", (head.key_id, head.signature, FIRST_HEAD)
    )


def retag_tenant(c: sqlite3.Connection) -> None:
    c.execute("UPDATE entries SET tenant = 'bund' WHERE idx = 4")


CASES = [
    ("one flipped byte in an entry", flip_one_byte, "leaf_hash", 5, None),
    ("an entry rewritten with its leaf hash recomputed", rewrite_with_hash(6), "subtree_cache", 6, None),
    ("the last entry rewritten with its leaf hash recomputed", rewrite_with_hash(20), "tree_head_root", None, SIZE),
    ("a deleted entry", delete_entry, "missing", 7, None),
    ("two entries swapped", swap_entries, "index", 3, None),
    ("an entry inserted", insert_entry, "index", 9, None),
    ("the log truncated", truncate, "missing", 15, SIZE),
    ("a forged tree-head signature", forge_signature, "tree_head_signature", None, FIRST_HEAD),
    ("a tree head re-signed by another key", resign_with_another_key, "tree_head_key", None, FIRST_HEAD),
    ("an entry's tenant column changed to hide it from its tenant", retag_tenant, "columns", 4, None),
]


def test_an_untouched_log_verifies(home: Site) -> None:
    with home.reader() as reader:
        report = reader.verify()
    assert (report.size, report.tree_heads, report.signed_size) == (SIZE, 2, SIZE)
    result = runner.invoke(audit.app, ["verify", *home.options()])
    assert result.exit_code == 0, result.output
    assert "ledger verified: 21 entries" in result.output


@pytest.mark.parametrize(("change", "check", "index", "tree_size"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_tampering_is_detected_with_the_first_bad_index(
    home: Site, change: Callable, check: str, index: int | None, tree_size: int | None
) -> None:
    tamper(home, change)
    with home.reader() as reader, pytest.raises(VerificationError) as info:
        reader.verify()
    assert (info.value.check, info.value.index) == (check, index), str(info.value)
    if tree_size is not None:
        assert info.value.tree_size == tree_size

    result = runner.invoke(audit.app, ["verify", *home.options()])
    assert result.exit_code == 1, result.output
    assert f"check: {check}" in result.output
    if index is not None:
        assert f"first bad index {index}" in result.output
    else:
        assert f"tree head of size {tree_size}" in result.output


def test_the_home_and_database_come_from_the_environment(home: Site) -> None:
    env = {"CORRIDOR_HOME": str(home.home), "CORRIDOR_DATABASE": home.database}
    assert runner.invoke(audit.app, ["verify"], env=env).exit_code == 0
    tamper(home, delete_entry)
    result = runner.invoke(audit.app, ["verify"], env=env)
    assert result.exit_code == 1 and "first bad index 7" in result.output


def test_verify_without_a_ledger_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(audit.app, ["verify", "--home", str(tmp_path)])
    assert result.exit_code == 2 and "no ledger database" in result.output


# Exports, verified offline against a signed tree head.


@pytest.fixture
def published(home: Site, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What an auditor takes away: full and filtered exports, the tree head, the public key (via the CLI)."""
    out = tmp_path_factory.mktemp("auditor")
    files = {}
    for name, args in {
        "head": ["tree-head"],
        "key": ["public-key"],
        "full": ["export"],
        "acme": ["export", "--tenant", "acme", "--tree-size", str(SIZE)],
    }.items():
        options = ["--home", str(home.home)] if name == "key" else home.options()
        result = runner.invoke(audit.app, [*args, *options])
        assert result.exit_code == 0, result.output
        files[name] = out / name
        files[name].write_text(result.stdout)
    return files


def verify_cli(published: dict, export: Path, *, key: Path | None = None) -> object:
    args = ["verify", "--export", str(export), "--tree-head", str(published["head"])]
    return runner.invoke(audit.app, [*args, "--public-key", str(key or published["key"])])


def test_full_and_filtered_exports_verify_offline(published: dict) -> None:
    head = json.loads(published["head"].read_text())
    assert head["tree_size"] == SIZE
    full = published["full"].read_text().splitlines()
    assert len(full) == SIZE and all(json.loads(line).keys() == {"index", "leaf_hash", "entry"} for line in full)
    acme = [json.loads(line) for line in published["acme"].read_text().splitlines()]
    assert [line["index"] for line in acme] == list(range(0, SIZE, 2))
    assert all(line["entry"]["tenant"] == "acme" and line["tree_size"] == SIZE for line in acme)
    key = json.loads(published["key"].read_text())

    report = verify_export(full, head, key)
    assert (report.lines, report.with_proofs, report.root_hash) == (SIZE, False, head["root_hash"])
    report = verify_export(published["acme"].read_text().splitlines(), head, key)
    assert (report.lines, report.with_proofs) == (len(acme), True)

    for export in ("full", "acme"):
        result = verify_cli(published, published[export])
        assert result.exit_code == 0, result.output
        assert "export verified" in result.output


def _edit_line(lines: list[str], number: int, edit: Callable[[dict], None]) -> list[str]:
    item = json.loads(lines[number])
    edit(item)
    return [*lines[:number], canonical_json(item).decode(), *lines[number + 1 :]]


def _rehash(item: dict) -> None:
    item["leaf_hash"] = _sha256(b"\x00" + canonical_json(item["entry"])).hex()


def _flip_entry(item: dict) -> None:
    item["entry"]["allowed"] = False


def _flip_and_rehash(item: dict) -> None:
    _flip_entry(item)
    _rehash(item)


def _bad_path(item: dict) -> None:
    item["inclusion_path"][0] = "00" * 32


EXPORT_CASES = [
    ("full: one entry changed", "full", lambda ls: _edit_line(ls, 3, _flip_entry), "leaf_hash", 3),
    ("full: one entry changed and its leaf hash recomputed", "full", lambda ls: _edit_line(ls, 3, _flip_and_rehash),
     "tree_head_root", None),
    ("full: a line removed", "full", lambda ls: ls[:5] + ls[6:], "missing", 5),
    ("full: two lines swapped", "full", lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], "missing", 1),
    ("full: truncated", "full", lambda ls: ls[:12], "missing", 12),
    ("filtered: one entry changed and its leaf hash recomputed", "acme",
     lambda ls: _edit_line(ls, 2, _flip_and_rehash), "inclusion", 4),
    ("filtered: a proof hash changed", "acme", lambda ls: _edit_line(ls, 1, _bad_path), "inclusion", 2),
    ("filtered: a line claims another index", "acme", lambda ls: _edit_line(ls, 1, lambda i: i.update(index=3)),
     "index", 3),
]


@pytest.mark.parametrize(
    ("export", "edit", "check", "index"), [c[1:] for c in EXPORT_CASES], ids=[c[0] for c in EXPORT_CASES]
)
def test_a_tampered_export_fails_with_the_first_bad_index(
    published: dict, tmp_path: Path, export: str, edit: Callable, check: str, index: int | None
) -> None:
    lines = edit(published[export].read_text().splitlines())
    head, key = json.loads(published["head"].read_text()), json.loads(published["key"].read_text())
    with pytest.raises(VerificationError) as info:
        verify_export(lines, head, key)
    assert (info.value.check, info.value.index) == (check, index), str(info.value)

    path = tmp_path / "tampered.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = verify_cli(published, path)
    assert result.exit_code == 1, result.output
    assert f"check: {check}" in result.output


def test_a_forged_tree_head_or_a_foreign_key_fails(published: dict, tmp_path: Path) -> None:
    lines = published["full"].read_text().splitlines()
    head, key = json.loads(published["head"].read_text()), json.loads(published["key"].read_text())
    forged = dict(head, root_hash=_sha256(b"forged").hex())
    with pytest.raises(VerificationError) as info:
        verify_export(lines, forged, key)
    assert info.value.check == "tree_head_signature"
    foreign = PublicKey.of(Ed25519PrivateKey.generate().public_key()).model_dump()
    with pytest.raises(VerificationError) as info:
        verify_export(lines, head, foreign)
    assert info.value.check == "tree_head_key"

    (tmp_path / "foreign.json").write_text(json.dumps(foreign))
    result = verify_cli(published, published["full"], key=tmp_path / "foreign.json")
    assert result.exit_code == 1 and "check: tree_head_key" in result.output
