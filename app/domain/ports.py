"""The ports the domain owns: what the use cases need from the directory, Graph, sign-in, the store, the budget
and the mail server.

Adapters implement these (app/adapters); the domain and the services name only these, never an adapter.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence

from app.domain.actors import Actor
from app.domain.directory import DirectoryUser, MembershipCheck
from app.domain.evidence import AuthMethod, Evidence, EvidenceSweep, GraphError, TemporaryAccessPass
from app.domain.grants import GrantState, GrantView
from app.domain.identity import AuthorityResponse, SignedInUser
from app.domain.invites import InviteFilter, InviteView
from app.domain.mail import MailRecord, MailState, OutgoingMail, RenderedMail


class Directory(Protocol):
    """What the portal needs from Active Directory (nothing more: password checks are the simulator's own)."""

    def find_user(self, upn: str) -> DirectoryUser | None:
        """Find a user by UPN (case-insensitive); None if there is none."""

    def search_users(self, prefix: str, limit: int) -> list[DirectoryUser]:
        """Find at most limit users whose UPN, account name or name starts with prefix (escaped; no groups read)."""

    def find_users(self, upns: Sequence[str], groups: Sequence[str]) -> dict[str, DirectoryUser]:
        """Find many users by UPN in few searches, keyed by lower-cased UPN (the unknown are left out).

        Each user's group_dns holds only those of `groups` the user is an effective (nested) member of.
        """

    def users_in_group(self, group_dn: str, limit: int) -> list[DirectoryUser]:
        """List the user accounts in a group, nested groups followed (ranged reads), sorted by UPN, no groups read;
        raise DirectoryError for a DN that is no group or for more than limit users."""

    def users_under(self, base_dn: str, limit: int) -> list[DirectoryUser]:
        """List the user accounts under an OU (its whole subtree), sorted by UPN, no groups read; raise
        DirectoryError for an unknown DN or for more than limit users."""

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

    def sweep_evidence(self, upns: Sequence[str], *, since: datetime,
                       progress: Callable[[int, int], None] | None = None) -> EvidenceSweep:
        """Gather the evidence about many people: $batch of 20, the Authenticator's sign-ins tenant-wide since
        `since` in pages; inside the budget; progress(done, total) after each request; failures per person."""

    def create_temporary_access_pass(self, user_id: str, lifetime_minutes: int = 60,
                                     one_time: bool = True) -> TemporaryAccessPass:
        """Create a TAP for a user."""


class Identity(Protocol):
    """What the portal needs from the sign-in authority (AD FS or Entra) for an auth-code flow."""

    def begin_sign_in(self, redirect_uri: str, *, force_login: bool = False, **extra: Any) -> tuple[str, dict]:
        """Return the authority's sign-in URL and the flow to keep until the callback."""

    def complete_sign_in(self, flow: Mapping[str, Any] | None, answer: AuthorityResponse) -> SignedInUser:
        """Redeem the callback's checked answer for a verified identity; raise SignInError when it cannot."""

    def logout_url(self, post_logout_redirect_uri: str) -> str:
        """Return the authority's sign-out URL that comes back to the portal."""


# Graph's throttling categories the portal spends from (learn.microsoft.com/graph/throttling-limits).
REPORTS = "reports"  # identity and access reports: sign-ins, registration details: 5 requests / 10 s / app / tenant
DIRECTORY = "directory"  # users, methods, devices: token bucket sized by tenant


@dataclass(frozen=True)
class Limit:
    """At most `capacity` requests per `per_seconds`.

    "window" counts requests in any sliding span of per_seconds (never exceeds a fixed or sliding
    enforcer); "bucket" refills capacity/per_seconds tokens a second, like Graph's directory bucket.
    """

    capacity: int
    per_seconds: float
    kind: Literal["window", "bucket"] = "window"

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.per_seconds <= 0:
            raise ValueError("a limit needs a positive capacity and period")

    @property
    def rate(self) -> float:
        return self.capacity / self.per_seconds


DEFAULT_LIMITS: Mapping[str, Limit] = {
    REPORTS: Limit(5, 10.0, "window"),
    # Requests, not units: most reads cost 1-2 units, so 1,000 a 10 s stays well inside the smallest
    # tenant's 3,500 units and leaves room for the university's other apps.
    DIRECTORY: Limit(1000, 10.0, "bucket"),
}


class RequestBudget(Protocol):
    """One rate governor shared by every process and instance that spends the app's Graph budget."""

    def take(self, category: str, count: int = 1, wait_seconds: float = 0.0) -> bool:
        """Reserve `count` requests in a category, waiting at most wait_seconds; False if not granted."""

    def back_off(self, category: str, seconds: float) -> None:
        """Record a Retry-After so that every instance waits it out."""


class GrantRecords(Protocol):
    """The grant records, inside one transaction."""

    def create(self, *, upn: str, user_dn: str, entra_user_id: str, actor: str, reason: str,
               created_at: datetime, expires_at: datetime, ttl_seconds: int | None = None,
               invite_id: int | None = None) -> tuple[GrantView, bool]:
        """Write a pending grant; return (the open grant, True) or (the person's existing open one, False)."""

    def get(self, grant_id: int) -> GrantView | None:
        """Return one grant, or None."""

    def move(self, grant_id: int, to: GrantState, **values: Any) -> GrantView | None:
        """Change a grant's state if the lifecycle allows it from the stored state (compare-and-set); else None."""

    def record_check(self, grant_id: int, *, at: datetime, dc_confirmed: bool | None = None) -> GrantView | None:
        """Note that a grant was checked (methods or replication) at a time."""

    def extend(self, grant_id: int, *, expires_at: datetime) -> GrantView | None:
        """Move an open grant's end; None if it has ended meanwhile."""


class MailSession(Protocol):
    """One connection to the mail server, reused for several messages."""

    def send(self, mail: OutgoingMail) -> None:
        """Hand one message to the server; return once it is accepted, raise MailError otherwise."""


class Mailer(Protocol):
    """What the portal needs from its mail server (app.adapters.mailer.SmtpMailer implements it)."""

    def session(self) -> AbstractContextManager[MailSession]:
        """Open a connection (lazily) that sends messages one after another and closes at the end."""


class AuditTrail(Protocol):
    """The audit trail, inside one transaction."""

    def add(self, actor: Actor, action: str, upn: str | None = None, grant_id: int | None = None,
            outcome: str = "ok", *, reason: str = "", **detail: Any) -> None:
        """Append one event: who, what, about whom, why."""


class InviteRecords(Protocol):
    """The invite rows, inside one transaction (app.adapters.store.invites.Invites implements it)."""

    def add_many(self, invites: list[dict], *, created_at: datetime, created_by: str, reason: str,
                 expires_at: datetime, batch_id: int | None = None) -> list[Any]:
        """Write new invites (token_hash, upn, sealed_token each); return their rows (id, upn; mail_id to set)."""

    def views(self, invite_ids: list[int]) -> list[InviteView]: ...
    def get(self, invite_id: int) -> InviteView | None: ...
    def usable_for(self, upns: list[str], now: datetime) -> list[tuple[int, str]]: ...
    def usable_in_batch(self, batch_id: int, now: datetime) -> list[int]: ...
    def mark_opened(self, invite_id: int, at: datetime) -> bool: ...
    def mark_used(self, invite_id: int, upn: str, at: datetime) -> bool: ...
    def revoke(self, invite_ids: list[int], at: datetime, by: str) -> list[int]: ...


class UnitOfWork(Protocol):
    """One transaction: a grant's change and the audit event recording it commit together or not at all."""

    grants: GrantRecords
    audit: AuditTrail
    invites: InviteRecords


class AuditWriter(Protocol):
    """The audit trail outside a unit of work: for events that record no state change (a refusal, a sign-in)."""

    def audit(self, actor: Actor, action: str, upn: str | None = None, grant_id: int | None = None,
              outcome: str = "ok", *, reason: str = "", severity: str = "info", **detail: Any) -> None:
        """Append one event in a transaction of its own."""


class Store(AuditWriter, Protocol):
    """What the use cases need from the database (app.adapters.store.Store implements it)."""

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        """Open one write transaction, committed when the block ends, rolled back if it raises."""

    def get_grant(self, grant_id: int) -> GrantView | None: ...
    def open_grant_for(self, upn: str) -> GrantView | None: ...
    def grants_for(self, upn: str, limit: int = 20) -> list[GrantView]: ...
    def open_grants(self) -> list[GrantView]: ...
    def open_grant_for_dn(self, dn: str) -> GrantView | None: ...
    def dns_with_grants(self, dns: list[str]) -> dict[str, bool]: ...
    def record_check(self, grant_id: int, *, at: datetime, dc_confirmed: bool | None = None) -> GrantView | None: ...
    def want_check(self, grant_id: int, at: datetime) -> bool: ...
    def record_methods_checks(self, grant_ids: list[int], *, at: datetime) -> None: ...
    def note_check_failed(self, grant_ids: list[int], note: str) -> None: ...
    def record_bypass_check(self, *, members: int, without_grant: int, at: datetime) -> None: ...
    def note_method_seen(self, grant_id: int, at: datetime) -> None: ...


class MailTemplates(Protocol):
    """The mail templates (app.adapters.mail_templates.MailTemplates implements it)."""

    def exists(self, kind: str) -> bool:
        """Tell whether a kind of mail has its templates."""

    def render(self, kind: str, language: str, params: dict) -> RenderedMail:
        """Render one kind of mail in a language with the given values."""


class OutboxStore(Protocol):
    """The mail outbox as the sender uses it (app.adapters.store.OutboxStore implements it)."""

    store: Store  # for the audit events of mails that never arrived

    def claim_due(self, limit: int, claim_seconds: float) -> list[MailRecord]: ...
    def mark_sent(self, mail: MailRecord) -> bool: ...
    def mark_retry(self, mail: MailRecord, *, error: str, code: int | None, at: datetime) -> bool: ...
    def mark_untried(self, mail: MailRecord, *, at: datetime) -> bool: ...
    def mark_ended(self, mail: MailRecord, state: MailState, *, error: str, code: int | None = None) -> bool: ...


class InviteStore(Protocol):
    """The invite rows read one verb at a time (app.adapters.store.InviteStore implements it)."""

    def get(self, invite_id: int) -> InviteView | None: ...
    def by_hash(self, token_hash: str) -> InviteView | None: ...
    def search(self, query: InviteFilter, now: datetime, *, before_id: int | None = None,
               limit: int = 50) -> list[InviteView]: ...
    def with_seal(self, invite_id: int) -> tuple[InviteView | None, str | None]: ...
    def erase_seals(self, now: datetime) -> int: ...


class Sealer(Protocol):
    """Encrypt a short value for the database and open it again (app.adapters.sealing.Sealer implements it)."""

    def seal(self, value: str) -> str: ...

    def open(self, sealed: str) -> str | None:
        """Return the value, or None if it was tampered with or sealed under another key."""
