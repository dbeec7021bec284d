"""The fuzz tier: Schemathesis against the gateway's own OpenAPI schema, for every role. Every
test here is marked ``fuzz``, so ``-m fuzz`` runs exactly this directory."""

from __future__ import annotations

import pytest

from fuzz_stack import SUMMARY


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/fuzz/" in str(item.path):
            item.add_marker(pytest.mark.fuzz)


def pytest_terminal_summary(terminalreporter, config) -> None:
    if SUMMARY in config.stash:
        terminalreporter.write_sep("-", "fuzz")
        terminalreporter.write_line(config.stash[SUMMARY])
