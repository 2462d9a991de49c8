"""The short reference code a student reads out to the service desk: the same code for the same account."""
from __future__ import annotations

import base64
import hashlib
import hmac

# Eight base32 characters (A-Z and 2-7: no 0 or 1, so an O or I read out on the phone is never a digit) are
# 40 bits: two accounts share a code about once in a trillion pairs, and nobody can guess an account from it.
CODE_LENGTH = 8
_LABEL = b"proofup reference code\0"


def reference_code(upn: str, key: str) -> str:
    """Return the account's reference code, e.g. "K7QD-M2XA", keyed by the portal's secret key."""
    digest = hmac.new(key.encode(), _LABEL + upn.strip().lower().encode(), hashlib.sha256).digest()
    code = base64.b32encode(digest).decode("ascii")[:CODE_LENGTH]
    return f"{code[:4]}-{code[4:]}"
