"""The directory interface: domain verbs over Active Directory, shared by LDAP and embedded backends."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


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
    upn: str
    sam_account_name: str
    display_name: str
    enabled: bool
    admin_count: int = 0
    mail: str = ""  # the `mail` attribute: where the portal's notices go
    preferred_language: str = ""  # the `preferredLanguage` attribute (e.g. de-DE), for those notices
    group_dns: frozenset[str] = field(default_factory=frozenset)  # effective (nested) memberships, as dn_key()

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


class Directory(Protocol):
    """What the portal and the simulator's AD FS need from Active Directory."""

    def find_user(self, upn: str) -> DirectoryUser | None:
        """Find a user by UPN (case-insensitive); None if there is none."""

    def verify_password(self, upn: str, password: str) -> bool:
        """Tell whether the password is right for an enabled user (a bind as that user)."""

    def add_member(self, group_dn: str, member_dn: str, ttl_seconds: int | None = None) -> bool:
        """Add a member; True if added, False if it already was one. TTL only where supported."""

    def remove_member(self, group_dn: str, member_dn: str) -> bool:
        """Remove a member; True if removed, False if it was not one."""

    def list_members(self, group_dn: str) -> list[str]:
        """List a group's direct member DNs (all ranges)."""

    def is_member(self, group_dn: str, member_dn: str) -> bool:
        """Tell whether member_dn is a direct member of group_dn."""

    def confirm_membership(
        self, group_dn: str, member_dn: str, present: bool = True, timeout_seconds: float = 20.0
    ) -> MembershipCheck:
        """Wait (bounded) until every configured DC shows the membership as wanted; report each DC."""

    def check_write_access(self, group_dn: str) -> bool:
        """Tell, without changing anything, whether the service account may write the group's member."""

    def servers(self) -> Sequence[str]:
        """Name the DCs this directory talks to (for status pages and doctor)."""

    def close(self) -> None:
        """Release connections."""
