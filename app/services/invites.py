"""Invite links: the desk (or a batch) mails a student a single-use link that leads to the normal sign-in.

- invite_many / invite: make invites and queue their mails in ONE unit of work with the audit lines; a newer
  invite revokes the student's older live ones (one working link per student: reminders are new invites).
- check: what GET /invite/<token> shows; it changes nothing (mail scanners fetch every link).
- open: the "Continue" POST: the invite is opened (recorded once) and the sign-in may start.
- redeem: after the sign-in, spend the invite if the signed-in account is the invite's, else refuse (not spent).
- revoke / revoke_batch: take invites back.

The token exists in clear only in the student's mail. The invite row keeps it sealed until the outbox has sent
that mail (InviteLinks renders the link at send time, then erases the seal), so no outbox row, log or audit
line ever holds it: refusals name a token by a short prefix of its hash.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Mapping

from app.domain.actors import Actor
from app.domain.errors import Refused
from app.domain.invites import (
    DEFAULT_INVITE_DAYS,
    INVITE_MAIL,
    InviteError,
    InviteFilter,
    InviteRefusal,
    InviteView,
    expiry,
    hash_prefix,
    new_token,
    redeem_refusal,
    token_hash,
    token_refusal,
    well_formed,
)
from app.domain.grants import utc_now
from app.domain.mail import MailRecord
from app.domain.ports import InviteStore, Sealer
from app.domain.staff import may_change_desk_work
from app.domain.upn import Upn
from app.services.events import Events, InviteEvent

log = logging.getLogger(__name__)
SEAL_LABEL = "proofup invite link"
MAX_INVITES_AT_ONCE = 2000  # a batch's upper bound (issue 12: up to 2,000 rows)


class InviteRefused(Refused):
    """A token or a sign-in through it is refused: `code` for the audit, `link_hash` names the token safely."""

    def __init__(self, code: InviteRefusal, link_hash: str, invite: InviteView | None = None):
        super().__init__(code, code.value)
        self.link_hash = link_hash
        self.invite = invite  # known to the service only; a visitor is never told which case it was


@dataclass(frozen=True)
class InviteSettings:
    """What invites need from the settings."""

    days: int = DEFAULT_INVITE_DAYS
    desk: str = ""  # how to reach the desk (the mail names it)
    university: str = ""
    public_url: str = ""  # where the link points (PROOFUP_PUBLIC_URL)
    mail_enabled: bool = False  # PROOFUP_SMTP_HOST is set: without a mail server an invite reaches nobody


class InviteService:
    """Make, check, open, redeem and revoke invites."""

    def __init__(self, store, invites: InviteStore, outbox, sealer: Sealer, settings: InviteSettings, *,
                 directory=None, clock: Callable[[], datetime] | None = None, locale: Callable[[], str] = lambda: "",
                 events: Events | None = None):
        self.store = store  # for its unit of work
        self.events = events or Events()  # told after each commit (metrics); the audit lines commit with the change
        self.directory = directory  # invite() checks the one student is there and has a mail address
        self.invites = invites
        self.outbox = outbox
        self.sealer = sealer
        self.settings = settings
        self.clock = clock or utc_now
        self.locale = locale

    # -- make ------------------------------------------------------------------------------------

    def invite(self, upn: str, actor: Actor, *, client: str = "") -> InviteView:
        """Invite one student (the desk's button): they must be in the directory with a mail address."""
        self._may_invite(actor)
        if self.directory is not None:
            user = self.directory.find_user(Upn(upn))
            if user is None:
                raise InviteError("missing_in_ad", "there is no such account in the directory")
            if not user.mail:
                raise InviteError("no_address", "the directory has no mail address for this student")
        return self.invite_many([upn], actor, client=client)[0]

    def invite_many(self, upns: Iterable[str], actor: Actor, *, reason: str | None = None,
                    batch_id: int | None = None, mail_kind: str = INVITE_MAIL, client: str = "",
                    addresses: Mapping[str, str] | None = None) -> list[InviteView]:
        """Invite many students in ONE unit of work (all or none); return the invites in the order given.

        The caller has checked who may be invited (the directory, a batch's preview). Duplicates are invited
        once. Each student's older live invites are revoked: one working link per student. `mail_kind` lets a
        batch send its own template (a reminder) with the same link rules. `addresses` names where a student's
        mail goes when the caller knows better than the directory (the address a batch's preview showed).
        """
        self._may_invite(actor)
        targets = list(dict.fromkeys(Upn(u) for u in upns))
        if not targets:
            return []
        if len(targets) > MAX_INVITES_AT_ONCE:
            raise InviteError("too_many", f"at most {MAX_INVITES_AT_ONCE} invites at once")
        if not self.settings.mail_enabled:
            raise InviteError("no_mail", "no mail server is set up (PROOFUP_SMTP_HOST): an invite would reach nobody")
        if not self.settings.public_url:
            raise InviteError("no_public_url", "the portal's address is not set (PROOFUP_PUBLIC_URL)")
        why = " ".join((reason if reason is not None else actor.reason).split())
        now = self.clock()
        tokens = [new_token() for _ in targets]
        with self.store.unit_of_work() as uow:
            rows = uow.invites
            # Bulk statements, not one round of queries per student: a batch of 2,000 is one transaction.
            replaced = dict(rows.usable_for(targets, now))
            for old in rows.revoke(list(replaced), now, actor.id):
                uow.audit.add(actor, "invite.revoked", replaced[old], reason=why, invite_id=old, superseded=True,
                              client=client)
            made = rows.add_many([{"token_hash": token_hash(token), "upn": upn, "sealed_token": self.sealer.seal(token)}
                                  for upn, token in zip(targets, tokens)],
                                 created_at=now, created_by=actor.id, reason=why,
                                 expires_at=expiry(now, self.settings.days), batch_id=batch_id)
            common = {"days": self.settings.days, "desk": self.settings.desk, "university": self.settings.university}
            to = {Upn(upn): address for upn, address in (addresses or {}).items()}
            mail_ids = self.outbox.queue_many(
                mail_kind, [(row.upn, to.get(row.upn, ""), {"invite_id": row.id, **common}, _cause(row.id))
                            for row in made], session=uow.session, locale=self.locale())
            for row, mail_id in zip(made, mail_ids):
                row.mail_id = mail_id
                uow.audit.add(actor, "invite.created", row.upn, reason=why, invite_id=row.id, batch_id=batch_id,
                              days=self.settings.days, client=client)
            uow.session.flush()
            views = rows.views([row.id for row in made])
            superseded = len(replaced)
        self._told(actor, "revoked", superseded)
        self._told(actor, "created", len(views))
        log.info("invites: %d made by %s", len(views), actor.kind.value)
        return views

    def _told(self, actor: Actor, change: str, count: int) -> None:
        """Tell the subscribers (after the commit) that some invites changed."""
        if count:
            self.events.emit(self.events.invites_changed, None, InviteEvent(actor, change, count))

    def _may_invite(self, actor: Actor) -> None:
        """Staff of the desk (not auditors), admins at the CLI and the worker (a batch's reminders) invite."""
        if not may_change_desk_work(actor):
            raise InviteError("not_allowed", "only the service desk invites students")

    # -- the link --------------------------------------------------------------------------------

    def check(self, token: str) -> InviteView:
        """Return the live invite behind a token, changing nothing; InviteRefused otherwise (one answer for all)."""
        if not well_formed(token):
            raise InviteRefused(InviteRefusal.MALFORMED, hash_prefix(str(token)[:200]))
        invite = self.invites.by_hash(token_hash(token))
        refusal = token_refusal(invite, self.clock())
        if refusal is not None:
            raise InviteRefused(refusal, hash_prefix(token), invite)
        return invite

    def open(self, token: str, actor: Actor, *, client: str = "") -> InviteView:
        """Take a token from the "Continue" POST: the invite is opened (audited the first time) and may sign in."""
        invite = self.check(token)
        now = self.clock()
        with self.store.unit_of_work() as uow:
            opened = uow.invites.mark_opened(invite.id, now)
            if opened:
                uow.audit.add(actor, "invite.opened", invite.upn, invite_id=invite.id, client=client)
        self._told(actor, "opened", int(opened))
        return invite

    def redeem(self, invite_id: int, signed_in: str, actor: Actor, *, client: str = "") -> InviteView:
        """Spend the invite for the account that just signed in; InviteRefused (nothing spent) otherwise."""
        now = self.clock()
        with self.store.unit_of_work() as uow:
            rows = uow.invites
            invite = rows.get(invite_id)
            refusal = redeem_refusal(invite, Upn(signed_in), now)
            if refusal is None and not rows.mark_used(invite_id, signed_in, now):
                refusal = InviteRefusal.USED  # a racing second sign-in spent it first
            if refusal is not None:
                raise InviteRefused(refusal, "", invite)
            uow.audit.add(actor, "invite.used", invite.upn, invite_id=invite_id, client=client)
            used = rows.get(invite_id)
        self._told(actor, "used", 1)
        return used

    # -- take back -------------------------------------------------------------------------------

    def revoke(self, invite_id: int, actor: Actor, *, client: str = "") -> bool:
        """Take one invite back (its link stops working); False if it was already used or revoked."""
        self._may_invite(actor)
        with self.store.unit_of_work() as uow:
            rows = uow.invites
            invite = rows.get(invite_id)
            if invite is None or not rows.revoke([invite_id], self.clock(), actor.id):
                return False
            uow.audit.add(actor, "invite.revoked", invite.upn, invite_id=invite_id, client=client)
        self._told(actor, "revoked", 1)
        return True

    def revoke_batch(self, batch_id: int, actor: Actor, *, client: str = "") -> int:
        """Take back every unused invite of a batch (closing it), in one unit of work; return how many."""
        self._may_invite(actor)
        now = self.clock()
        with self.store.unit_of_work() as uow:
            rows = uow.invites
            revoked = rows.revoke(rows.usable_in_batch(batch_id, now), now, actor.id)
            for invite in rows.views(revoked):
                uow.audit.add(actor, "invite.revoked", invite.upn, invite_id=invite.id, batch_id=batch_id,
                              client=client)
        self._told(actor, "revoked", len(revoked))
        return len(revoked)

    # -- read ------------------------------------------------------------------------------------

    def search(self, query: InviteFilter, *, before_id: int | None = None, limit: int = 50) -> list[InviteView]:
        """Return one page of invites, newest first."""
        return self.invites.search(query, self.clock(), before_id=before_id, limit=limit)

    def get(self, invite_id: int) -> InviteView | None:
        """Return one invite, or None."""
        return self.invites.get(invite_id)


class InviteLinks:
    """Put the link into an invite's mail when the worker sends it, and erase the seal once it is sent."""

    def __init__(self, invites: InviteStore, sealer: Sealer, public_url: str, *,
                 clock: Callable[[], datetime] | None = None):
        self.invites = invites
        self.sealer = sealer
        self.public_url = public_url.rstrip("/")
        self.clock = clock or utc_now

    def params(self, mail: MailRecord) -> dict:
        """Return the link and its end for a mail that carries an invite ({} for other mail); LookupError if gone."""
        if "invite_id" not in mail.params:
            return {}
        invite_id = mail.params["invite_id"]
        invite, sealed = self.invites.with_seal(invite_id) if isinstance(invite_id, int) else (None, None)
        if invite is None or not invite.state(self.clock()).usable:
            raise LookupError("the invite was revoked, used or expired before its mail went out")
        token = self.sealer.open(sealed) if sealed else None
        if token is None:
            raise LookupError("the invite's link is no longer kept (sent already, or sealed under another key)")
        return {"link": f"{self.public_url}/invite/{token}", "expires": invite.expires_at.isoformat()}

    def settled(self) -> int:
        """Erase the seals nothing will send any more (after a mail pass); return how many."""
        return self.invites.erase_seals(self.clock())


def _cause(invite_id: int) -> str:
    """Name an invite's mail in the outbox (one mail per invite)."""
    return f"invite:{invite_id}"
