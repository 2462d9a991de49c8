"""Security notices: "if this was not you, call the desk", mailed when an account is unlocked and when a new
sign-in method appears (a grant released because the student registered one).

The notices carry no link at all (a link in a security mail is what phishing imitates), only the desk's
contact from the settings. They are queued in the outbox inside the grant change's own transaction (the
events' grant_committing), one per grant and kind (a dedupe key), and sent by the worker; the student's
address and language are looked up when the mail is sent.
"""
from __future__ import annotations

import logging
from typing import Callable

from app.domain.grants import GrantState, GrantView, released_by_registration

log = logging.getLogger(__name__)
UNLOCKED = "security_unlocked"
METHOD_ADDED = "security_method_added"


class SecurityNotices:
    """Queue the notices for the grant changes that call for one."""

    def __init__(self, outbox, *, desk: str = "", university: str = "", locale: Callable[[], str] = lambda: ""):
        self.outbox = outbox
        self.desk = desk  # who and how to call; empty: a generic line
        self.university = university  # named in the footer: a mail that names no sender looks like phishing
        self.locale = locale  # the language the student is reading the portal in, when a visit caused it

    def unlocked(self, grant: GrantView, *, session=None) -> bool:
        """Queue "your account was unlocked" for an active grant; False if it was already queued."""
        moment = grant.activated_at or grant.created_at
        minutes = round((grant.expires_at - grant.created_at).total_seconds() / 60)
        return self._queue(UNLOCKED, grant, {"when": moment.isoformat(), "minutes": minutes}, session)

    def method_added(self, grant: GrantView, *, session=None) -> bool:
        """Queue "a new sign-in method was added" for a grant released because a method appeared."""
        moment = grant.ended_at or grant.created_at
        # Released by the worker there is no visit to take the language from: the unlock's notice has it.
        locale = self.locale() or self.outbox.locale_of(_cause(UNLOCKED, grant), session=session)
        return self._queue(METHOD_ADDED, grant, {"when": moment.isoformat()}, session, locale=locale)

    def subscribe(self, events) -> None:
        """Queue a notice in the transaction of each grant change that calls for one."""

        def on_change(_sender, event, uow) -> None:
            grant = event.grant
            if grant.state is GrantState.ACTIVE:
                self.unlocked(grant, session=uow.session)
            elif grant.state is GrantState.RELEASED and released_by_registration(event.reason):
                self.method_added(grant, session=uow.session)

        events.grant_committing.connect(on_change, weak=False)  # lives as long as the portal's events

    def _queue(self, kind: str, grant: GrantView, params: dict, session, locale: str | None = None) -> bool:
        queued = self.outbox.queue(kind, upn=str(grant.upn), locale=self.locale() if locale is None else locale,
                                   params={**params, "desk": self.desk, "university": self.university},
                                   dedupe_key=_cause(kind, grant), session=session)
        if queued:
            log.info("mail: %s queued for grant %s", kind, grant.id)
        return queued


def _cause(kind: str, grant: GrantView) -> str:
    """Name the cause of a notice: one notice of a kind per grant."""
    return f"{kind}:grant:{grant.id}"


def desk_line(settings) -> str:
    """Return how to reach the desk from the desk settings (never its web address: a notice has no link)."""
    parts = (settings.desk_text, settings.desk_phone, settings.desk_hours)
    return ", ".join(part.strip() for part in parts if part.strip())
