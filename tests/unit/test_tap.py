"""The Temporary Access Pass remedy's rules: the policy's scope and lifetimes, Graph's refusals, which remedy is offered."""
from __future__ import annotations

import pytest

from app.domain.actors import WORKER, Actor
from app.domain.evidence import GraphError, GraphThrottled, GraphUnavailable
from app.domain.state import classify, remedies_offered, remedy_refusal
from app.domain.tap import ALL_USERS, REMEDY_SETTINGS, Remedy, TapPolicy, TapRefusal, refusal_for, tap_refusal
from tests.unit.test_state import ADMINS, POLICY, REQUIRED, UPN, evidence, student

GROUP, OTHER = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
BOTH = REMEDY_SETTINGS["both"]


def stuck(**kwargs):
    return classify(UPN, student(REQUIRED), evidence(sign_ins=1), POLICY, **kwargs)


@pytest.mark.parametrize(("policy", "member_of", "covered"), [
    (TapPolicy(enabled=True), frozenset(), True),
    (TapPolicy(enabled=False), frozenset(), False),
    (TapPolicy(enabled=True, include_group_ids=(GROUP,)), frozenset({GROUP}), True),
    (TapPolicy(enabled=True, include_group_ids=(GROUP,)), frozenset({OTHER}), False),
    (TapPolicy(enabled=True, exclude_group_ids=(OTHER,)), frozenset({OTHER}), False),
    (TapPolicy(enabled=True, include_group_ids=(GROUP,), exclude_group_ids=(OTHER,)), frozenset({GROUP, OTHER}), False),
])
def test_the_policy_covers_its_included_groups_and_exclusions_win(policy, member_of, covered):
    assert policy.covers(member_of) is covered


def test_the_groups_to_check_are_only_those_the_policy_names():
    assert TapPolicy(enabled=True).names_groups == ()
    assert TapPolicy(enabled=True, include_group_ids=(ALL_USERS,), exclude_group_ids=(OTHER,)).names_groups == (OTHER,)
    assert TapPolicy(enabled=True, include_group_ids=(GROUP,), exclude_group_ids=(OTHER,)).names_groups == (GROUP, OTHER)


@pytest.mark.parametrize(("low", "high", "task", "lifetime"), [
    (60, 480, 30, 60),  # the tenant's minimum is longer than the task: the shortest allowed
    (10, 480, 30, 30),  # the task fits: exactly the task
    (10, 20, 30, 20),  # nothing fits: the longest allowed
    (5, 43200, 1, 10),  # never below what Graph accepts
])
def test_the_lifetime_is_the_shortest_the_policy_allows_that_fits_the_task(low, high, task, lifetime):
    assert TapPolicy(enabled=True, minimum_minutes=low, maximum_minutes=high).lifetime_for(task) == lifetime


def test_grahps_refusals_are_classified_by_status_and_graphs_own_words():
    scope = GraphError("Graph answered 400 (badRequest)", 400, "badRequest",
                       graph_message="Converged UserCredentialPolicy does not allow creating or updating this "
                                     "authentication method. AuthMethodType [TemporaryAccessPass].")
    lifetime = GraphError("Graph answered 400", 400, "badRequest",
                          graph_message="Invalid LifetimeInMinutes, valid range between 60 and 480")
    assert refusal_for(scope) is TapRefusal.OUT_OF_SCOPE
    assert refusal_for(lifetime) is TapRefusal.LIFETIME
    assert refusal_for(GraphThrottled("429", 429, "TooManyRequests", 3)) is TapRefusal.THROTTLED
    assert refusal_for(GraphUnavailable("503", 503)) is TapRefusal.UNAVAILABLE
    assert refusal_for(GraphError("forbidden", 403, "Authorization_RequestDenied")) is TapRefusal.UNAVAILABLE


def test_the_tenant_refusal_needs_the_policy_and_the_groups_it_names():
    assert tap_refusal(None, frozenset()) is TapRefusal.UNAVAILABLE
    assert tap_refusal(TapPolicy(enabled=False), frozenset()) is TapRefusal.DISABLED
    assert tap_refusal(TapPolicy(enabled=True), None) is None  # names no group: nothing to check
    named = TapPolicy(enabled=True, include_group_ids=(GROUP,))
    assert tap_refusal(named, None) is TapRefusal.UNAVAILABLE
    assert tap_refusal(named, frozenset({OTHER})) is TapRefusal.OUT_OF_SCOPE
    assert tap_refusal(named, frozenset({GROUP})) is None


def test_the_remedies_offered_follow_the_setting_and_the_tenant():
    me = Actor.student(UPN)
    assert remedies_offered(stuck(), me, BOTH) == (Remedy.TAP, Remedy.BYPASS)
    assert remedies_offered(stuck(), me, REMEDY_SETTINGS["bypass"]) == (Remedy.BYPASS,)
    assert remedies_offered(stuck(), me, BOTH, TapRefusal.OUT_OF_SCOPE) == (Remedy.BYPASS,)
    assert remedies_offered(stuck(), me, REMEDY_SETTINGS["tap"], TapRefusal.DISABLED) == ()
    assert remedy_refusal(stuck(), me, Remedy.TAP, REMEDY_SETTINGS["bypass"]) == "tap_not_configured"
    assert remedy_refusal(stuck(), me, Remedy.TAP, BOTH, TapRefusal.OUT_OF_SCOPE) == "tap_out_of_scope"


def test_a_pass_follows_the_same_safety_rules_and_cap_as_the_bypass():
    me = Actor.student(UPN)
    privileged = classify(UPN, student(REQUIRED, ADMINS), evidence(), POLICY)
    registered = classify(UPN, student(REQUIRED), evidence("phone"), POLICY)
    disabled = classify(UPN, student(REQUIRED, enabled=False), evidence(), POLICY)
    for diagnosis, code in ((privileged, "privileged"), (registered, "has_strong_method"), (disabled, "disabled")):
        assert remedy_refusal(diagnosis, me, Remedy.TAP, BOTH) == code
        assert remedies_offered(diagnosis, me, BOTH) == ()
    capped = stuck(unlocks_in_window=POLICY.max_unlocks)  # bypass grants and passes count alike
    assert remedy_refusal(capped, me, Remedy.TAP, BOTH) == "unlock_cap"
    staff = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="at the desk with student id")
    assert remedy_refusal(capped, staff, Remedy.TAP, BOTH, override_cap=True) is None
    assert remedy_refusal(stuck(), WORKER, Remedy.TAP, BOTH) == "not_allowed"
    assert remedy_refusal(stuck(), Actor.student("someone.else@uni.test"), Remedy.TAP, BOTH) == "not_yourself"
