"""Classification and eligibility: every state and every reason, and the order of the safety checks."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from app.domain.directory import DirectoryUser, dn_key
from app.domain.evidence import AuthMethod, Device, EntraUser, Evidence, GraphError, SignIn
from app.domain.actors import WORKER, Actor, ActorError
from app.domain.state import GrantFacts, Policy, Reason, State, classify, unlock_refusal

REQUIRED = "CN=MFA_Required,OU=Groups,DC=uni,DC=test"
BYPASS = "CN=MFA_ProofUpBypass,OU=Groups,DC=uni,DC=test"
ADMINS = "CN=Domain Admins,CN=Users,DC=uni,DC=test"
POLICY = Policy(required_group_dn=REQUIRED, bypass_group_dn=BYPASS, privileged_group_dns=(ADMINS,))
WHEN = datetime(2026, 9, 1, 9, 30, tzinfo=timezone.utc)
UPN = "ada.lovelace@uni.test"


def student(*groups: str, enabled: bool = True, admin_count: int = 0,
            dn: str = "CN=Ada Lovelace,OU=Students,DC=uni,DC=test") -> DirectoryUser:
    return DirectoryUser(dn=dn, upn=UPN, sam_account_name="ada.lovelace", display_name="Ada Lovelace",
                         enabled=enabled, admin_count=admin_count, group_dns=frozenset(dn_key(g) for g in groups))


def evidence(*kinds: str, sign_ins: int = 0, devices: int = 0, in_entra: bool = True,
             entra_enabled: bool = True, errors: dict | None = None) -> Evidence:
    user = EntraUser(id="u-1", upn=UPN, display_name="Ada Lovelace", account_enabled=entra_enabled) if in_entra else None
    methods = (AuthMethod("pw", "password"),) + tuple(AuthMethod(f"m{i}", k) for i, k in enumerate(kinds))
    return Evidence(
        user=user, methods=methods,
        authenticator_sign_ins=tuple(SignIn(f"s{i}", WHEN, "app", "Microsoft Authenticator", 0) for i in range(sign_ins)),
        devices=tuple(Device(f"d{i}", "Pixel") for i in range(devices)),
        errors=errors or {},
    )


def grant(state: str) -> GrantFacts:
    return GrantFacts(id=7, state=state, expires_at=WHEN, dc_confirmed=True)


@pytest.mark.parametrize(
    ("user", "ev", "open_grant", "last_grant", "state", "reason"),
    [
        (None, None, None, None, State.INELIGIBLE, Reason.MISSING_IN_AD),
        (student(REQUIRED, enabled=False), evidence(), None, None, State.INELIGIBLE, Reason.DISABLED),
        (student(REQUIRED), evidence(entra_enabled=False), None, None, State.INELIGIBLE, Reason.DISABLED),
        (student(REQUIRED, admin_count=1), evidence(), None, None, State.INELIGIBLE, Reason.PRIVILEGED),
        (student(REQUIRED, ADMINS), evidence(), None, None, State.INELIGIBLE, Reason.PRIVILEGED),
        (student(), evidence(), None, None, State.NOT_REQUIRED, Reason.NOT_IN_REQUIRED_GROUP),
        (student(REQUIRED), evidence(in_entra=False), None, None, State.INELIGIBLE, Reason.MISSING_IN_ENTRA),
        (student(REQUIRED), evidence("microsoftAuthenticator"), None, None, State.REGISTERED, Reason.HAS_STRONG_METHOD),
        (student(REQUIRED), evidence("phone"), None, grant("released"), State.COMPLETED, Reason.GRANT_RELEASED),
        (student(REQUIRED), evidence(), grant("active"), None, State.UNLOCKED, Reason.GRANT_OPEN),
        (student(REQUIRED), evidence(), grant("pending"), None, State.UNLOCKED, Reason.GRANT_OPEN),
        (student(REQUIRED), evidence(), None, grant("expired"), State.EXPIRED, Reason.GRANT_EXPIRED),
        (student(REQUIRED), evidence(sign_ins=2), None, None, State.STUCK, Reason.HALF_REGISTERED),
        (student(REQUIRED), evidence(devices=1), None, None, State.STUCK, Reason.HALF_REGISTERED),
        (student(REQUIRED), evidence(), None, None, State.STUCK, Reason.UNREGISTERED),
        # Weak methods do not count: email (SSPR) and a TAP leave the student stuck.
        (student(REQUIRED), evidence("email", "temporaryAccessPass"), None, None, State.STUCK, Reason.UNREGISTERED),
        # A cancelled (released, no method) grant does not make anyone "completed".
        (student(REQUIRED), evidence(sign_ins=1), None, grant("released"), State.STUCK, Reason.HALF_REGISTERED),
    ],
)
def test_classify_puts_each_case_in_one_state(user, ev, open_grant, last_grant, state, reason):
    found = classify(UPN, user, ev, POLICY, open_grant=open_grant, last_grant=last_grant)
    assert (found.state, found.reason) == (state, reason)


def test_safety_checks_win_over_an_open_grant():
    found = classify(UPN, student(REQUIRED, admin_count=1), evidence(), POLICY, open_grant=grant("active"))
    assert found.reason == Reason.PRIVILEGED
    assert not found.can_unlock


def test_scope_limits_who_is_served():
    scoped = Policy(REQUIRED, BYPASS, (ADMINS,), scope_base_dn="OU=Students,DC=uni,DC=test")
    inside = classify(UPN, student(REQUIRED), evidence(), scoped)
    outside = classify(UPN, student(REQUIRED, dn="CN=Ada Lovelace,OU=Staff,DC=uni,DC=test"), evidence(), scoped)
    lookalike = classify(UPN, student(REQUIRED, dn="CN=X,OU=NotStudents,DC=uni,DC=test"), evidence(), scoped)
    assert inside.state == State.STUCK
    assert outside.reason == Reason.OUT_OF_SCOPE
    assert lookalike.reason == Reason.OUT_OF_SCOPE


def test_nesting_and_bypass_are_reported():
    nested_group = "CN=MFA_Required_Cohort2026,OU=Groups,DC=uni,DC=test"
    found = classify(UPN, student(REQUIRED, nested_group, BYPASS), evidence(), POLICY, required_directly=False)
    assert found.mfa_required and not found.mfa_required_directly
    assert found.in_bypass


def test_unreadable_evidence_parts_are_noted():
    ev = evidence(errors={"sign_ins": GraphError("throttled", 429)})
    found = classify(UPN, student(REQUIRED), ev, POLICY)
    assert found.notes == ("sign_ins",)


@pytest.mark.parametrize(
    ("user", "ev", "last_grant", "signed_in", "refusal"),
    [
        (student(REQUIRED), evidence(sign_ins=1), None, UPN, None),
        (student(REQUIRED), evidence(), None, "ADA.LOVELACE@uni.test ", None),
        (student(REQUIRED), evidence(), grant("expired"), UPN, None),
        (student(REQUIRED), evidence(), None, "grace.hopper@uni.test", "not_yourself"),
        (student(REQUIRED), evidence("microsoftAuthenticator"), None, UPN, "has_strong_method"),
        (student(), evidence(), None, UPN, "not_in_required_group"),
        (student(REQUIRED, admin_count=1), evidence(), None, UPN, "privileged"),
        (student(REQUIRED, enabled=False), evidence(), None, UPN, "disabled"),
        (student(REQUIRED), evidence(in_entra=False), None, UPN, "missing_in_entra"),
        (None, None, None, UPN, "missing_in_ad"),
    ],
)
def test_unlock_policy(user, ev, last_grant, signed_in, refusal):
    found = classify(UPN, user, ev, POLICY, last_grant=last_grant)
    assert unlock_refusal(found, Actor.student(signed_in)) == refusal


def test_an_open_grant_is_not_unlocked_twice():
    found = classify(UPN, student(REQUIRED), evidence(), POLICY, open_grant=grant("active"))
    assert unlock_refusal(found, Actor.student(UPN)) == "already_unlocked"


ADMIN = Actor.cli("root", reason="ticket 4711")
HELPDESK = Actor.staff("grace.hopper@uni.test", role="helpdesk", reason="phoned in, ticket 12")


@pytest.mark.parametrize(("user", "ev", "refusal"), [
    (student(REQUIRED), evidence(sign_ins=1), None),
    (student(REQUIRED), evidence("phone"), "has_strong_method"),
    (student(REQUIRED, admin_count=1), evidence(), "privileged"),
    (student(REQUIRED, enabled=False), evidence(), "disabled"),
    (student(REQUIRED, dn="CN=Ada,OU=Staff,DC=other,DC=test"), evidence(), None),  # POLICY has no scope
])
@pytest.mark.parametrize("actor", [ADMIN, HELPDESK], ids=["cli", "staff"])
def test_admins_and_staff_go_through_the_same_policy(user, ev, refusal, actor):
    assert unlock_refusal(classify(UPN, user, ev, POLICY), actor) == refusal


@pytest.mark.parametrize("actor", [WORKER, Actor.visitor("203.0.113.9")], ids=["worker", "visitor"])
def test_the_worker_and_visitors_never_unlock(actor):
    assert unlock_refusal(classify(UPN, student(REQUIRED), evidence(), POLICY), actor) == "not_allowed"


def test_staff_and_admins_must_say_why():
    for make in (lambda r: Actor.cli("root", reason=r),
                 lambda r: Actor.staff("grace.hopper@uni.test", role="helpdesk", reason=r)):
        for empty in ("", "   ", "\n"):
            with pytest.raises(ActorError):
                make(empty)
    with pytest.raises(ActorError):
        Actor.staff("grace.hopper@uni.test", role="", reason="ticket 1")
    assert Actor.cli("root", reason="ticket\n4711\r\nfake line").reason == "ticket 4711 fake line"


def test_an_actor_names_itself_in_the_audit_trail():
    assert str(ADMIN) == "cli:root" and ADMIN.kind.value == "cli"
    assert str(Actor.student(" Ada.Lovelace@UNI.test")) == UPN
    assert Actor.student(UPN).is_self("ADA.LOVELACE@uni.test") and not ADMIN.is_self(UPN)


def test_the_cap_refuses_a_stuck_student_who_used_every_unlock_of_the_window():
    under = classify(UPN, student(REQUIRED), evidence(), POLICY, unlocks_in_window=POLICY.max_unlocks - 1)
    at_cap = classify(UPN, student(REQUIRED), evidence(), POLICY, unlocks_in_window=POLICY.max_unlocks)
    assert under.can_unlock and unlock_refusal(under, Actor.student(UPN)) is None
    assert at_cap.state is State.STUCK and at_cap.capped and not at_cap.can_unlock
    assert unlock_refusal(at_cap, Actor.student(UPN)) == "unlock_cap"


def test_the_cap_applies_after_an_expired_unlock_too_and_never_hides_a_safety_reason():
    expired = classify(UPN, student(REQUIRED), evidence(), POLICY, last_grant=grant("expired"), unlocks_in_window=3)
    assert unlock_refusal(expired, Actor.student(UPN)) == "unlock_cap"
    privileged = classify(UPN, student(REQUIRED, admin_count=1), evidence(), POLICY, unlocks_in_window=3)
    assert unlock_refusal(privileged, HELPDESK, override_cap=True) == "privileged"


@pytest.mark.parametrize(("actor", "override", "refusal"), [
    (Actor.student(UPN), True, "unlock_cap"),  # a student cannot ask to pass the cap
    (HELPDESK, False, "unlock_cap"),  # staff must ask explicitly (with a reason)
    (HELPDESK, True, None),
    (ADMIN, True, None),
    (WORKER, True, "not_allowed"),  # the worker never unlocks at all
], ids=["student", "staff-not-asking", "staff", "cli", "worker"])
def test_only_staff_asking_explicitly_may_pass_the_cap(actor, override, refusal):
    found = classify(UPN, student(REQUIRED), evidence(), POLICY, unlocks_in_window=5)
    assert unlock_refusal(found, actor, override_cap=override) == refusal


def test_the_cap_is_a_setting_of_the_policy():
    assert POLICY.max_unlocks == 3
    strict = Policy(required_group_dn=REQUIRED, bypass_group_dn=BYPASS, max_unlocks=1)
    assert classify(UPN, student(REQUIRED), evidence(), strict, unlocks_in_window=1).capped
