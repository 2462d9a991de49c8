"""The short reference code a student reads out to the service desk: the same code for the same account."""
from __future__ import annotations

import base64
import hashlib
import hmac

# Eight base32 characters (A-Z, 2-7: no 0/O or 1/I to confuse) are 40 bits: across a university's accounts
# two students share a code about once in a trillion pairs, and nobody can guess an account from its code.
CODE_LENGTH = 8
_LABEL = b"proofup reference code\0"


def reference_code(upn: str, key: str) -> str:
    """Return the account's reference code, e.g. "K7QD-M2XA", keyed by the portal's secret key."""
    digest = hmac.new(key.encode(), _LABEL + upn.strip().lower().encode(), hashlib.sha256).digest()
    code = base64.b32encode(digest).decode("ascii")[:CODE_LENGTH]
    return f"{code[:4]}-{code[4:]}"
