"""The integration tier: a real local Ray cluster (``ray.cluster_utils.Cluster``) with labelled
nodes and declared GPUs. Every test here is marked ``integration``, so ``-m integration`` runs
exactly this directory; fixtures the modules share live here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scheduler.ledger import Ledger


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def module_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """One ledger for a module's tests, which share its cluster too."""
    with Ledger.open(tmp_path_factory.mktemp("ledger")) as opened:
        yield opened
