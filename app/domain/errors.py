"""The one shape of a refusal: a rule says no with a code; the audit trail records it and each page words it."""
from __future__ import annotations

from typing import Any


class Refused(Exception):
    """A rule refuses a request: `code` names why, `params` fill the page's message, `message` speaks to the CLI."""

    def __init__(self, code: str, message: str = "", **params: Any):
        super().__init__(message or code)
        self.code = code
        self.params = params
