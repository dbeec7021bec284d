"""The PostgreSQL tier: the shared stores and several gateway processes on a real server.

Every test that uses ``postgres_url`` or ``postgres_server`` (here or in another tier, e.g.
the ledger suites parametrised over both backends) is marked ``postgres`` by the root
``conftest.py``, so ``-m postgres`` runs exactly those."""
