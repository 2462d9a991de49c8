"""Fixtures for the fault tests."""
from __future__ import annotations

import pytest

from app.seed import load_seed


@pytest.fixture
def seed():
    return load_seed()
