"""Fixtures for the database adapters: a clock the test moves and a migrated store on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest

from tests.services.helpers import FakeClock
from tests.support import upgraded_store


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(database_url, clock):
    with upgraded_store(database_url, clock) as s:
        yield s
