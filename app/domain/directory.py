"""What the portal knows about people in Active Directory: users, memberships, DNs and the directory's errors."""
from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.upn import Upn


class DirectoryError(Exception):
    """A directory operation failed; `str()` is a message fit for an admin."""


class DirectoryUnavailable(DirectoryError):
    """No DC answered (down, timeout, TLS failure): transient, worth a retry later."""


class DirectoryAuthError(DirectoryError):
    """The service account's bind was refused (wrong DN or password)."""


class DirectoryPermissionError(DirectoryError):
    """The service account lacks the right to do this (insufficientAccessRights)."""


def dn_key(dn: str) -> str:
    """Return a comparable form of a DN: lower-case, no spaces around separators."""
    parts = []
    for rdn in dn.split(","):
        attr, _, value = rdn.partition("=")
        parts.append(f"{attr.strip().lower()}={value.strip().lower()}")
    return ",".join(parts)


@dataclass(frozen=True)
class DirectoryUser:
    """A person in AD, with the facts the portal's policy needs."""

    dn: str
    upn: Upn
    sam_account_name: str
    display_name: str
    enabled: bool
    admin_count: int = 0
    mail: str = ""  # the `mail` attribute: where the portal's notices go
    preferred_language: str = ""  # the `preferredLanguage` attribute (e.g. de-DE), for those notices
    group_dns: frozenset[str] = field(default_factory=frozenset)  # effective (nested) memberships, as dn_key()

    def __post_init__(self) -> None:
        object.__setattr__(self, "upn", Upn(self.upn))

    def in_group(self, group_dn: str) -> bool:
        """Tell whether the user is an effective (possibly nested) member of a group."""
        return dn_key(group_dn) in self.group_dns


@dataclass(frozen=True)
class MembershipCheck:
    """What each configured DC says about one membership after a change."""

    agreeing: tuple[str, ...]  # DCs that show the wanted state
    lagging: tuple[str, ...]  # DCs that do not (yet)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def confirmed(self) -> bool:
        """Tell whether every DC agrees with the wanted state."""
        return not self.lagging and not self.errors
