"""The Temporary Access Pass through the Graph adapter (msgraph-sdk, msal) against the simulated Graph.

The tenant's policy and the domain's federation are read, not assumed; each refusal comes back in Graph's own
shape and is classified by the domain (app/domain/tap.py).
"""
from __future__ import annotations

import uuid

import pytest

from app.domain.evidence import GraphError, GraphThrottled
from app.domain.tap import ALL_USERS, TapRefusal, refusal_for
from tests.adapters.test_graph_simulator import make_client

STUDENT = "grace.hopper@uni.test"


@pytest.fixture
def private(simulator_factory):
    """A simulator of its own: these tests change the tenant's policy and the student's methods."""
    simulator = simulator_factory()
    return simulator, make_client(simulator)


def set_policy(simulator, **values) -> None:
    answer = simulator.control("POST", "/tap-policy", values)
    assert answer.status_code == 200, answer.text


def test_the_policy_and_the_federation_are_read_through_graph_and_the_policy_is_kept_a_while(private):
    simulator, graph = private
    group = str(uuid.uuid4())
    set_policy(simulator, minimum_minutes=60, maximum_minutes=480, default_minutes=90, usable_once=True,
               exclude_group_ids=[group], default_length=12)
    since = simulator.last_seq()
    policy = graph.tap_policy()
    assert (policy.enabled, policy.include_group_ids, policy.exclude_group_ids) == (True, (ALL_USERS,), (group,))
    assert (policy.minimum_minutes, policy.maximum_minutes, policy.default_minutes) == (60, 480, 90)
    assert policy.usable_once and policy.default_length == 12 and policy.names_groups == (group,)
    set_policy(simulator, state="disabled")
    assert graph.tap_policy() == policy  # kept: one read per few minutes, not one per diagnosis
    reads = [e for e in simulator.requests_log(since) if "authenticationMethodConfigurations" in e["path"]]
    assert len(reads) == 1 and reads[0]["status"] == 200
    assert make_client(simulator).tap_policy().enabled is False  # a fresh read sees the change

    assert graph.federated_idp_mfa_behavior("uni.test") == "acceptIfMfaDoneByFederatedIdp"
    simulator.control("POST", "/federation", {"federatedIdpMfaBehavior": "enforceMfaByFederatedIdp"})
    assert graph.federated_idp_mfa_behavior("uni.test") == "enforceMfaByFederatedIdp"
    assert graph.federated_idp_mfa_behavior("elsewhere.example") == ""  # not a federated domain of the tenant
    with pytest.raises(ValueError):
        graph.federated_idp_mfa_behavior("uni.test/../users")


def test_group_membership_is_checked_for_the_groups_the_policy_names(private):
    simulator, graph = private
    user_id = simulator.user(STUDENT).object_id
    inside, outside = str(uuid.uuid4()), str(uuid.uuid4())
    simulator.control("POST", "/entra-groups", {"upn": STUDENT, "group_id": inside})
    assert graph.member_groups(user_id, [inside, outside, "not-a-guid"]) == frozenset({inside})
    assert graph.member_groups(user_id, ["not-a-guid"]) == frozenset()


def test_the_tenants_refusals_come_back_in_graphs_shape_and_are_classified(private):
    simulator, graph = private
    user_id = simulator.user(STUDENT).object_id

    set_policy(simulator, minimum_minutes=60, maximum_minutes=480)
    with pytest.raises(GraphError) as lifetime:
        graph.create_temporary_access_pass(user_id, lifetime_minutes=30)
    assert lifetime.value.status == 400 and "between 60 and 480" in lifetime.value.graph_message
    assert refusal_for(lifetime.value) is TapRefusal.LIFETIME

    group = str(uuid.uuid4())
    set_policy(simulator, include_group_ids=[group])
    with pytest.raises(GraphError) as scope:
        graph.create_temporary_access_pass(user_id, lifetime_minutes=60)
    assert "Converged UserCredentialPolicy" in scope.value.graph_message
    assert refusal_for(scope.value) is TapRefusal.OUT_OF_SCOPE

    set_policy(simulator, include_group_ids=[ALL_USERS], state="disabled")
    with pytest.raises(GraphError) as disabled:
        graph.create_temporary_access_pass(user_id, lifetime_minutes=60)
    assert refusal_for(disabled.value) is TapRefusal.OUT_OF_SCOPE  # Graph says the same; the policy read tells

    set_policy(simulator, state="enabled")
    simulator.add_fault(f"/v1.0/users/{user_id}/authentication/temporaryAccessPassMethods", "429", seconds=3,
                        count=1)
    with pytest.raises(GraphThrottled) as throttled:
        graph.create_temporary_access_pass(user_id, lifetime_minutes=60)
    assert refusal_for(throttled.value) is TapRefusal.THROTTLED and throttled.value.retry_after == 3

    listed = simulator.graph_get(f"/users/{user_id}/authentication/temporaryAccessPassMethods").json()["value"]
    assert listed == [], "no refusal left a pass behind"


def test_a_pass_is_created_once_and_deleted_if_still_there(private):
    simulator, graph = private
    user_id = simulator.user(STUDENT).object_id
    set_policy(simulator, usable_once=True, default_length=10)
    tap = graph.create_temporary_access_pass(user_id, lifetime_minutes=60, one_time=False)
    assert len(tap.code) == 10 and tap.one_time  # the tenant makes every pass one-time
    assert graph.delete_temporary_access_pass(user_id, tap.id) is True
    assert graph.delete_temporary_access_pass(user_id, tap.id) is False  # already gone: not an error
    with pytest.raises(ValueError):
        graph.delete_temporary_access_pass(user_id, "../passwordMethods")
