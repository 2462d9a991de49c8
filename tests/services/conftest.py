"""Fixtures for the grant and worker services: a migrated store, a clock, directories (embedded or Samba)."""
from __future__ import annotations

import pytest

from app.adapters.directory_embedded import EmbeddedDirectory
from app.seed import load_seed
from tests.services.helpers import FakeClock
from tests.support import upgraded_store


@pytest.fixture
def seed():
    return load_seed()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'proofup.sqlite3'}"


@pytest.fixture
def store(sqlite_url, clock):
    with upgraded_store(sqlite_url, clock) as s:
        yield s


@pytest.fixture(params=["embedded", pytest.param("samba", marks=pytest.mark.samba)])
def directory(request, seed):
    """The same tests on the in-process directory and on a real Samba AD DC (bypass group emptied first)."""
    if request.param == "embedded":
        yield EmbeddedDirectory(seed)
        return
    handle = request.getfixturevalue("clean_bypass_group")
    d = handle.directory()
    yield d
    d.close()
