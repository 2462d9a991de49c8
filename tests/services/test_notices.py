"""Security notices: queued in the grant change's own transaction, for an unlock and for a new method only."""
from __future__ import annotations

from dataclasses import replace

import pytest

from app.adapters.directory_embedded import EmbeddedDirectory
from app.adapters.store import OutboxStore
from app.domain.actors import WORKER, Actor
from app.domain.grants import REGISTERED, GrantState
from app.services.events import Events, GrantEvent
from app.services.grants import GrantService
from app.services.notices import METHOD_ADDED, UNLOCKED, SecurityNotices, desk_line

ADA = "ada.lovelace@uni.test"


@pytest.fixture
def outbox(store):
    return OutboxStore(store, sender="proofup@uni.test")


@pytest.fixture
def events(outbox):
    events = Events()
    SecurityNotices(outbox, desk="IT Service Desk, +49 30 1234", university="Hochschule Musterstadt",
                    locale=lambda: "de").subscribe(events)
    return events


@pytest.fixture
def grants(store, seed, clock, events):
    return GrantService(store, EmbeddedDirectory(seed), bypass_group_dn=seed.bypass_group_dn, clock=clock,
                        events=events)


def unlock(grants, seed):
    user = EmbeddedDirectory(seed).find_user(ADA)
    return grants.open_grant(upn=ADA, user_dn=user.dn, entra_user_id="e-ada", actor=Actor.student(ADA),
                             reason="stuck in loop")


def kinds(outbox) -> list[str]:
    return [m.kind for m in reversed(outbox.mails_for(ADA))]


def test_an_unlock_queues_one_notice_with_the_desk_and_the_visits_language(grants, outbox, seed, clock):
    grant = unlock(grants, seed)
    unlock(grants, seed)  # a second click finds the open grant: no second notice
    (mail,) = outbox.mails_for(ADA)
    assert (mail.kind, mail.locale, mail.to) == (UNLOCKED, "de", "")  # the address is looked up when sending
    assert mail.params == {"when": clock().isoformat(), "minutes": 30, "desk": "IT Service Desk, +49 30 1234",
                           "university": "Hochschule Musterstadt"}
    assert grant.state is GrantState.ACTIVE


def test_a_release_because_a_method_appeared_queues_the_new_method_notice(grants, outbox, seed, clock, events):
    grant = unlock(grants, seed)
    clock.advance(300)
    events.grant_committing.receivers.clear()  # the worker releases: no visit, so no language of its own ...
    SecurityNotices(outbox).subscribe(events)
    grants.close_grant(grant.id, outcome="released", actor=WORKER, reason=REGISTERED + "microsoftAuthenticator")
    assert kinds(outbox) == [UNLOCKED, METHOD_ADDED]
    added = outbox.mails_for(ADA)[0]
    assert added.params["when"] == clock().isoformat()
    assert added.locale == "de"  # ... the unlock's notice gives it


@pytest.mark.parametrize(("outcome", "reason"), [
    ("released", "membership no longer in the bypass group"),  # an admin removed it by hand: no new method
    ("cancelled", "student pressed cancel"),
    ("expired", "grant time ended"),
])
def test_other_ends_of_a_grant_send_nothing(grants, outbox, seed, outcome, reason):
    grant = unlock(grants, seed)
    grants.close_grant(grant.id, outcome=outcome, actor=WORKER, reason=reason)
    assert kinds(outbox) == [UNLOCKED]


def test_the_notice_commits_or_rolls_back_with_the_grant_change(store, outbox, events, grants, seed):
    grant = unlock(grants, seed)
    released = GrantEvent(replace(grant, state=GrantState.RELEASED), WORKER, REGISTERED + "phone")
    with pytest.raises(RuntimeError), store.unit_of_work() as uow:
        events.emit(events.grant_committing, grants, released, uow=uow)
        raise RuntimeError("the grant change failed after the notice was queued")
    assert kinds(outbox) == [UNLOCKED]  # rolled back together
    with store.unit_of_work() as uow:
        events.emit(events.grant_committing, grants, released, uow=uow)
    assert kinds(outbox) == [UNLOCKED, METHOD_ADDED]


def test_the_desk_line_names_no_web_address():
    from app.config import load_settings

    base = {"PROOFUP_SECRET_KEY": "0123456789abcdef0123", "PROOFUP_AUTHORITY": "https://adfs.uni.test/adfs",
            "PROOFUP_CLIENT_ID": "portal"}
    desk = load_settings({**base, "PROOFUP_DESK_TEXT": "IT Service Desk, Library", "PROOFUP_DESK_PHONE": "+49 30 1234",
                          "PROOFUP_DESK_HOURS": "Mon-Fri 8-18", "PROOFUP_DESK_URL": "https://desk.uni.test"})
    assert desk_line(desk) == "IT Service Desk, Library, +49 30 1234, Mon-Fri 8-18"
    assert desk_line(load_settings(base)) == ""


def test_the_notice_names_the_desk_and_the_university_and_no_link_in_both_parts():
    from app.adapters.mail_templates import MailTemplates

    values = {"name": "Ada", "upn": ADA, "when": "2026-09-01T09:00:00+00:00", "minutes": 30,
              "desk": "IT-Service, +49 30 1234", "university": "Hochschule Musterstadt"}
    german = MailTemplates().render(UNLOCKED, "de", values)
    assert "rufen Sie sofort den IT-Service an: IT-Service, +49 30 1234" in german.text
    assert "verschickt (Hochschule Musterstadt)" in german.text and "verschickt (Hochschule Musterstadt)" in german.html
    generic = MailTemplates().render(METHOD_ADDED, "en", {**values, "desk": "", "university": ""})
    assert "call your university's IT service desk now" in generic.text
    for body in (german.text, german.html, generic.text, generic.html):
        assert "http" not in body and "<a" not in body and "www." not in body
