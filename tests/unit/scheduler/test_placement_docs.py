"""The examples in the scheduler's docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["scheduler", "scheduler.spec", "scheduler.placement", "scheduler.selectors", "scheduler.snapshot",
           "scheduler.ledger.decisions", "scheduler.crisis.record", "policies.decision", "serving.loopback"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0
