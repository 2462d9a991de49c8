"""Seal a short value for the database with a key derived from PROOFUP_SECRET_KEY (Fernet: AES and an HMAC)."""
from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class Sealer:
    """Encrypt and open values for one purpose; another purpose's label derives another key."""

    def __init__(self, secret_key: str, label: str):
        if not secret_key or not label:
            raise ValueError("a sealer needs the secret key and a label for its purpose")
        digest = hashlib.sha256(label.encode() + b"\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, value: str) -> str:
        """Return the value encrypted and authenticated, as text."""
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str | None:
        """Return the value, or None if it was tampered with or sealed under another key or purpose."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError, UnicodeError):
            return None
