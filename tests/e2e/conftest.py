"""The end-to-end tier: real vLLM servers, the gateway and the official ``openai`` SDK. Every
test here is marked ``e2e`` (slow), so ``-m e2e`` runs exactly this directory."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
