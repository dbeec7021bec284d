"""Shared fixtures for every tier."""

from __future__ import annotations

import pytest

from policies import Policy


@pytest.fixture(scope="session")
def default_policy() -> Policy:
    """The shipped default bundle, compiled."""
    return Policy.load()
