"""Fixtures shared by the unit tier (no Ray, no vLLM): a fresh ledger in a temporary home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.ledger import Ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """An empty ledger (and signing key) in ``tmp_path / "home"``, closed after the test."""
    with Ledger.open(tmp_path / "home") as opened:
        yield opened
