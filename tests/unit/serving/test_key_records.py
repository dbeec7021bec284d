"""The key records shared by a site's gateway processes, on both backends: the JSON file (embedded
default) and PostgreSQL. The PostgreSQL cases carry the ``postgres`` marker."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from serving.gateway.auth import KeyStore
from serving.gateway.keys import KeyFile, KeyRecord, open_key_store

BACKENDS = ["file", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def where(request, tmp_path) -> dict:
    if request.param == "postgres":
        return {"path": None, "database": request.getfixturevalue("postgres_url")}
    return {"path": tmp_path / "api-keys.json", "database": None}


@pytest.fixture(autouse=True)
def opened(monkeypatch):
    """Every key store a test opens, closed after it."""
    import serving.gateway.auth as auth
    import serving.gateway.keys as keys

    stores, original = [], keys.open_key_store

    def opening(*args, **kwargs):
        stores.append(original(*args, **kwargs))
        return stores[-1]

    monkeypatch.setattr(auth, "open_key_store", opening)
    monkeypatch.setitem(globals(), "open_key_store", opening)
    yield stores
    for store in stores:
        store.close()


def _eventually(check, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.02)


def test_a_change_returns_its_result_and_survives_reopening(where):
    records = open_key_store(where["path"], database=where["database"])
    record = KeyRecord(id="k1", sha256="0" * 64, role="auditor", scope=("fr-interior", "de-bund"))
    assert records.update(lambda r: r.setdefault("k1", record)) == record
    again = open_key_store(where["path"], database=where["database"])
    assert again.refresh() == {"k1": record}
    assert again.update(lambda r: r.pop("k1").id) == "k1"
    _eventually(lambda: records.refresh() == {})


def test_a_key_issued_by_one_process_works_in_another_and_its_revocation_stops_it_there(where):
    process_a = KeyStore(where["path"], site="FR", database=where["database"])
    process_b = KeyStore(where["path"], site="FR", database=where["database"])
    record, key = process_a.create("app", tenant="fr-interior", name="triage")
    _eventually(lambda: process_b.authenticate(key) is not None)
    assert process_b.authenticate(key).tenant == "fr-interior"
    process_a.revoke(record.id, by="key:op")
    _eventually(lambda: process_b.authenticate(key) is None, timeout=1.0)
    assert process_b.get(record.id).revoked_by == "key:op"


def test_concurrent_changes_from_two_processes_are_all_kept(where):
    a = open_key_store(where["path"], database=where["database"])
    b = open_key_store(where["path"], database=where["database"])
    for n in range(10):
        (a if n % 2 else b).update(lambda r, n=n: r.__setitem__(f"k{n}", KeyRecord(f"k{n}", "0" * 64, "app", "t")))
    _eventually(lambda: sorted(a.refresh()) == sorted(f"k{n}" for n in range(10)))


def test_the_last_use_is_written_for_every_process_to_list(where):
    clock_now = [dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)]
    store = KeyStore(where["path"], database=where["database"], clock=lambda: clock_now[0])
    _, key = store.create("admin", tenant="de-health")
    clock_now[0] += dt.timedelta(minutes=5)
    store.authenticate(key)
    other = KeyStore(where["path"], database=where["database"])
    _eventually(lambda: other.list()[0].last_used_at == clock_now[0].isoformat())


def test_without_a_path_or_database_the_records_are_in_memory():
    assert isinstance(open_key_store(None), KeyFile) and open_key_store(None).path is None
