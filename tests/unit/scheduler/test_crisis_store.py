"""Where crisis declarations are kept, on both backends (``crisis.json``, the embedded default, and
PostgreSQL), and two registries sharing one store as two gateway processes of a site do. The
PostgreSQL cases carry the ``postgres`` marker."""

from __future__ import annotations

import datetime as dt

import pytest

from policies.bundle import Operator
from scheduler.crisis import CrisisRegistry
from scheduler.crisis.store import FileCrisisStore, open_crisis_store

ANNE = Operator(operator="anne", jurisdiction="FR")
BERND = Operator(operator="bernd", jurisdiction="DE")
SCOPE = {"tenants": ["fr-interior"], "markings": ["Diffusion Restreinte"], "models": ["corridor-tiny"],
         "directions": ["FR->DE"]}
T0 = dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.timezone.utc)

BACKENDS = ["file", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database(request):
    return request.getfixturevalue("postgres_url") if request.param == "postgres" else None


@pytest.fixture(autouse=True)
def opened(monkeypatch):
    """Every store a test opens, closed after it."""
    import scheduler.crisis.store as module

    stores, original = [], module.open_crisis_store

    def opening(*args, **kwargs):
        stores.append(original(*args, **kwargs))
        return stores[-1]

    monkeypatch.setattr(module, "open_crisis_store", opening)
    monkeypatch.setitem(globals(), "open_crisis_store", opening)
    yield stores
    for store in stores:
        store.close()


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def _registry(policy, ledger, home, database, clock=lambda: T0):
    return CrisisRegistry(policy, ledger, None, clock=clock, store=open_crisis_store(home, database=database))


def test_an_empty_store_reads_as_no_declaration_and_keeps_what_is_written(default_policy, ledger, home, database):
    store = open_crisis_store(home, database=database)
    assert store.read() == []
    registry = _registry(default_policy, ledger, home, database)
    record = registry.declare(ANNE, scope=SCOPE, reason="flood", valid_for_hours=4)
    assert [r.id for r in open_crisis_store(home, database=database).read()] == [record.id]
    assert open_crisis_store(home, database=database).read()[0] == record


def test_every_write_moves_the_version(default_policy, ledger, home, database):
    store = open_crisis_store(home, database=database)
    before = store.version()
    registry = _registry(default_policy, ledger, home, database)
    record = registry.declare(ANNE, scope=SCOPE, reason="flood", valid_for_hours=4)
    middle = store.version()
    registry.approve(record.id, BERND)
    assert len({repr(before), repr(middle), repr(store.version())}) == 3


def test_a_declaration_made_in_one_process_is_approved_in_another_and_crosses_in_both(
        default_policy, ledger, home, database):
    process_a = _registry(default_policy, ledger, home, database)
    process_b = _registry(default_policy, ledger, home, database)
    heard = []
    process_a.subscribe(lambda: heard.append("a"))
    record = process_a.declare(ANNE, scope=SCOPE, reason="flood", valid_for_hours=4)
    process_b.approve(record.id, BERND)  # process b sees a's declaration
    assert process_a.declarations()[0].approvals == [], "not yet refreshed"
    assert process_a.refresh() is True and heard[-1] == "a"
    assert process_a.get(record.id).status(T0) == "active"
    assert [a.operator for a in process_a.declarations()[0].approvals] == ["bernd"]
    assert process_a.refresh() is False, "nothing changed since"


def test_a_stale_process_does_not_undo_anothers_step(default_policy, ledger, home, database):
    process_a = _registry(default_policy, ledger, home, database)
    process_b = _registry(default_policy, ledger, home, database)
    first = process_a.declare(ANNE, scope=SCOPE, reason="flood", valid_for_hours=4)
    process_b.refresh()
    process_b.approve(first.id, BERND)
    second = process_a.declare(ANNE, scope=SCOPE, reason="storm", valid_for_hours=4)
    process_b.refresh()
    assert process_b.get(first.id).status(T0) == "active", "a's write kept b's approval"
    assert {r.id for r in process_b.list()} == {first.id, second.id}


def test_the_tick_of_another_process_logs_an_expiry_once(default_policy, ledger, home, database):
    now = [T0]
    process_a = _registry(default_policy, ledger, home, database, clock=lambda: now[0])
    process_b = _registry(default_policy, ledger, home, database, clock=lambda: now[0])
    record = process_a.declare(ANNE, scope=SCOPE, reason="flood", valid_for_hours=1)
    now[0] += dt.timedelta(hours=2)
    assert process_a.tick() == 1
    assert process_b.tick() == 0, "b reloads before ticking and finds the expiry logged"
    expired = [i for i in ledger.entries(kind="crisis", limit=100)["data"]
               if i["entry"]["detail"]["step"] == "expired" and i["entry"]["declaration"] == record.id]
    assert len(expired) == 1


def test_the_embedded_default_is_crisis_json_in_home(home):
    store = open_crisis_store(home)
    assert isinstance(store, FileCrisisStore) and store.path == home / "crisis.json"
    assert store.version() is None
