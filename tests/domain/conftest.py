"""Fixtures for the domain tests: labours in a known starting state."""

import pytest

from .builders import Scenario, planned_scenario


@pytest.fixture
def empty() -> Scenario:
    """A scenario with no labour yet."""
    return Scenario()


@pytest.fixture
def scenario() -> Scenario:
    """A planned labour whose share token is set."""
    return planned_scenario()
