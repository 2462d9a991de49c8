"""The ports the domain owns: what the use cases need from the directory, Graph, sign-in and the Graph budget.

Adapters implement these (app/adapters); the domain and the services name only these, never an adapter.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

from app.domain.directory import DirectoryUser, MembershipCheck
from app.domain.evidence import AuthMethod, Evidence, GraphError, TemporaryAccessPass
from app.domain.identity import SignedInUser


class Directory(Protocol):
    """What the portal needs from Active Directory (nothing more: password checks are the simulator's own)."""

    def find_user(self, upn: str) -> DirectoryUser | None:
        """Find a user by UPN (case-insensitive); None if there is none."""

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


class Graph(Protocol):
    """What the portal needs from Microsoft Graph (app-only token)."""

    def gather_evidence(self, upn: str) -> Evidence:
        """Fetch user, methods, Authenticator sign-ins and devices in ONE $batch."""

    def methods_for(self, user_ids: Sequence[str]) -> dict[str, tuple[AuthMethod, ...] | GraphError]:
        """Fetch the methods of many users, 20 per $batch; failures per user, never raised."""

    def create_temporary_access_pass(self, user_id: str, lifetime_minutes: int = 60,
                                     one_time: bool = True) -> TemporaryAccessPass:
        """Create a TAP for a user."""


class Identity(Protocol):
    """What the portal needs from the sign-in authority (AD FS or Entra) for an auth-code flow."""

    def begin_sign_in(self, redirect_uri: str, *, force_login: bool = False, **extra: Any) -> tuple[str, dict]:
        """Return the authority's sign-in URL and the flow to keep until the callback."""

    def complete_sign_in(self, flow: Mapping[str, Any] | None, params: Mapping[str, str]) -> SignedInUser:
        """Redeem the callback's code for a verified identity; raise SignInError when it cannot."""

    def logout_url(self, post_logout_redirect_uri: str) -> str:
        """Return the authority's sign-out URL that comes back to the portal."""


# Graph's throttling categories the portal spends from (learn.microsoft.com/graph/throttling-limits).
REPORTS = "reports"  # identity and access reports: sign-ins, registration details: 5 requests / 10 s / app / tenant
DIRECTORY = "directory"  # users, methods, devices: token bucket sized by tenant


class RequestBudget(Protocol):
    """One rate governor shared by every process and instance that spends the app's Graph budget."""

    def take(self, category: str, count: int = 1, wait_seconds: float = 0.0) -> bool:
        """Reserve `count` requests in a category, waiting at most wait_seconds; False if not granted."""

    def back_off(self, category: str, seconds: float) -> None:
        """Record a Retry-After so that every instance waits it out."""
