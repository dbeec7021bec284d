"""The cache-salt secret of a site with a database: every process of the site — each with its own
home, as the gateway pods of ``deploy/kuberay`` — salts a tenant alike, so the tenant's
requests share vLLM's prefix cache whichever process sends them; tenants still differ; processes
starting together on a fresh database agree; each site's schema has its own secret."""

from __future__ import annotations

import hashlib
import hmac
import logging
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from scheduler.database import ensure_schema, site_url
from serving.config import load_run_config
from serving.installation.access import gateway_options
from serving.routing.cache_salt import SECRET_FILENAME, CacheSalts, open_cache_salts

ROOT = Path(__file__).resolve().parents[2]
SALT_OF = ("import sys; from serving.routing.cache_salt import open_cache_salts; "
           "print(open_cache_salts(sys.argv[1], sys.argv[2]).salt('fr-interior'))")


def _homes(root: Path, n: int) -> list[Path]:
    homes = [root / f"pod-{i}" for i in range(n)]
    for home in homes:
        home.mkdir()
    return homes


def test_processes_with_separate_homes_salt_a_tenant_alike_and_tenants_apart(postgres_url, tmp_path):
    one, two = (open_cache_salts(home, postgres_url) for home in _homes(tmp_path, 2))
    assert one.salt("fr-interior") == two.salt("fr-interior")
    assert one.salt("fr-interior") != one.salt("de-health")
    assert two.salt("de-health") == one.salt("de-health")
    assert one.salt("fr-interior") != CacheSalts().salt("fr-interior"), "not a process's own secret"
    assert not any(home.joinpath(SECRET_FILENAME).exists() for home in tmp_path.iterdir())


def test_the_salts_are_the_hmac_under_the_one_stored_secret(postgres_url, tmp_path):
    salts = open_cache_salts(tmp_path, postgres_url)
    with psycopg.connect(postgres_url) as connection:
        rows = connection.execute("SELECT secret FROM cache_salt_secret").fetchall()
    assert len(rows) == 1 and len(rows[0][0]) == 32
    assert salts.salt("t") == hmac.new(bytes(rows[0][0]), b"corridor cache salt\x00t",
                                       hashlib.sha256).hexdigest()


def test_threads_racing_to_create_the_secret_agree(postgres_url, tmp_path):
    homes = _homes(tmp_path, 6)
    barrier = threading.Barrier(len(homes))
    salts: dict[int, str] = {}

    def start(i: int) -> None:
        barrier.wait()
        salts[i] = open_cache_salts(homes[i], postgres_url).salt("fr-interior")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(len(homes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(salts) == len(homes) and len(set(salts.values())) == 1


def test_two_processes_starting_together_on_a_fresh_database_agree(postgres_url, tmp_path):
    processes = [subprocess.Popen([sys.executable, "-c", SALT_OF, str(home), postgres_url],
                                  cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                  env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
                 for home in _homes(tmp_path, 2)]
    outputs = [process.communicate(timeout=60)[0].strip() for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert outputs[0] == outputs[1] == open_cache_salts(tmp_path, postgres_url).salt("fr-interior")


def test_the_control_process_and_a_worker_build_their_gateways_with_the_same_salts(
        postgres_url, tmp_path, default_policy):
    control, worker = _homes(tmp_path, 2)
    options = [gateway_options(load_run_config(None, home), home, default_policy, database=postgres_url)
               for home in (control, worker)]
    assert options[0]["cache_salts"].salt("t") == options[1]["cache_salts"].salt("t")


def test_each_site_of_one_database_has_its_own_secret(postgres_url, tmp_path):
    fr, de = site_url(postgres_url, "FR"), site_url(postgres_url, "DE")
    ensure_schema(fr)
    ensure_schema(de)
    assert open_cache_salts(tmp_path, fr).salt("t") != open_cache_salts(tmp_path, de).salt("t")
    assert open_cache_salts(tmp_path, fr).salt("t") == open_cache_salts(tmp_path, fr).salt("t")


def test_the_secret_appears_in_no_log_record(postgres_url, tmp_path, caplog):
    with caplog.at_level(logging.DEBUG):
        open_cache_salts(tmp_path, postgres_url)
    with psycopg.connect(postgres_url) as connection:
        (secret,) = connection.execute("SELECT secret FROM cache_salt_secret").fetchone()
    assert bytes(secret).hex() not in caplog.text and repr(bytes(secret)) not in caplog.text
