"""The service desk's reference code: short, stable per account, different per account and per key."""
from __future__ import annotations

import re

from app.domain.reference import reference_code

KEY = "test-secret-key-0123456789"


def test_the_same_account_gets_the_same_code_however_it_is_typed():
    code = reference_code("ada.lovelace@uni.test", KEY)
    assert re.fullmatch(r"[A-Z2-7]{4}-[A-Z2-7]{4}", code)
    assert reference_code(" Ada.Lovelace@UNI.test ", KEY) == code


def test_codes_differ_between_accounts_and_keys():
    codes = {reference_code(f"student{i}@uni.test", KEY) for i in range(5000)}
    assert len(codes) == 5000
    assert reference_code("ada.lovelace@uni.test", "another-secret-key-0123") != reference_code(
        "ada.lovelace@uni.test", KEY)
