"""The site's cache salts without a database: the secret file in ``$CORRIDOR_HOME``, created
whole once even by processes starting together; and a database that does not answer stops the
start instead of giving the process a secret of its own. The database cases are in
``tests/postgres/test_cache_salt_secret.py``."""

from __future__ import annotations

import threading

import pytest

from scheduler.database import DatabaseUnavailable
from serving.config import load_run_config
from serving.installation.access import gateway_options
from serving.routing.cache_salt import SECRET_FILENAME, CacheSalts, open_cache_salts

NOWHERE = "postgresql://corridor@127.0.0.1:1/corridor"  # nothing listens on port 1


def test_without_a_database_the_salts_are_the_home_files_and_kept_across_opens(tmp_path):
    first = open_cache_salts(tmp_path)
    assert oct((tmp_path / SECRET_FILENAME).stat().st_mode & 0o777) == "0o600"
    again = open_cache_salts(tmp_path, None)
    assert again.salt("fr-interior") == first.salt("fr-interior") != first.salt("de-health")
    assert CacheSalts((tmp_path / SECRET_FILENAME).read_bytes()).salt("t") == first.salt("t")


def test_another_home_is_another_installation_with_other_salts(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert open_cache_salts(tmp_path / "a").salt("t") != open_cache_salts(tmp_path / "b").salt("t")


def test_processes_sharing_a_home_that_start_together_all_keep_the_first_whole_secret(tmp_path):
    barrier = threading.Barrier(8)
    salts: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            salts.append(open_cache_salts(tmp_path).salt("fr-interior"))
        except BaseException as exc:  # noqa: BLE001 - a half-written secret would land here
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(salts) == 8 and len(set(salts)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILENAME], "no draft left behind"
    assert len((tmp_path / SECRET_FILENAME).read_bytes()) == 32


def test_a_database_that_does_not_answer_stops_the_start_and_no_secret_is_made_instead(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="cache-salt secret.*start the database"):
        open_cache_salts(tmp_path, NOWHERE, timeout=0.5)
    assert not (tmp_path / SECRET_FILENAME).exists(), "no fallback to a secret of the home"


def test_without_a_database_the_gateway_salts_under_its_homes_secret(tmp_path, default_policy):
    options = gateway_options(load_run_config(None, tmp_path), tmp_path, default_policy)
    assert options["cache_salts"].salt("t") == open_cache_salts(tmp_path).salt("t")
