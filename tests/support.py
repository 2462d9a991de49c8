"""Helpers shared by test modules: the rule for real parts that are missing."""
from __future__ import annotations

import os

import pytest


def real_parts_required() -> bool:
    """Tell whether a missing real part (Samba, Chromium, PostgreSQL) must fail rather than skip."""
    return bool(os.environ.get("CI") or os.environ.get("PROOFUP_REQUIRE_REAL"))


def missing_real_part(what: str, how: str = "run scripts/test, which installs it") -> None:
    """Fail in CI (and under scripts/test), skip elsewhere: a missing real part is never silently passed."""
    message = f"{what} is not available: {how}"
    if real_parts_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
