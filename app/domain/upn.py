"""A user principal name: one value type, normalised once where a UPN enters the portal."""
from __future__ import annotations


class InvalidUpn(ValueError):
    """The text is not a user principal name (name@domain, no spaces or control characters)."""


class Upn(str):
    """A UPN in the one form the portal compares, keys and stores it by: trimmed and lower-case.

    Made at the edge (sign-in, the directory, the CLI, the store); everything inside compares Upn values
    with ==, never lower-cases again. Upn(Upn(x)) is x: wrapping twice costs nothing.
    """

    __slots__ = ()

    def __new__(cls, value: object) -> "Upn":
        if isinstance(value, Upn):
            return value
        text = value.strip().lower() if isinstance(value, str) else ""
        # No whitespace and nothing unprintable: every whitespace but " " is unprintable, so two C-speed checks
        # say the same as a loop over the characters (each poll makes a Upn of the stored session's name).
        if "@" not in text or text.startswith("@") or text.endswith("@") or " " in text or not text.isprintable():
            raise InvalidUpn(f"not a user principal name: {_shown(value)}")
        return super().__new__(cls, text)

    @classmethod
    def parse(cls, value: object) -> "Upn | None":
        """Return the Upn, or None when the text is not one (for lookups that answer "nobody")."""
        try:
            return cls(value)
        except InvalidUpn:
            return None


def _shown(value: object) -> str:
    """Quote an outside value for a message: escaped and bounded, never a raw line break."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
