"""The seed file: the demo seed covers every state, and malformed seeds are refused with a named entry."""
import pytest

from app.seed import DEMO_SEED, SeedError, USER_STATES, load_seed


def test_demo_seed_covers_every_state():
    seed = load_seed(DEMO_SEED)
    assert {u.state for u in seed.users} == USER_STATES
    assert any(u.nested for u in seed.users), "a student MFA-required only through a nested group"
    assert any(not u.in_entra for u in seed.users), "a student missing in Entra"


def test_demo_seed_builds_ad_distinguished_names():
    seed = load_seed(DEMO_SEED)
    ada = seed.user("ADA.LOVELACE@uni.test")
    assert seed.user_dn(ada) == "CN=Ada Lovelace,OU=Students,DC=uni,DC=test"
    assert seed.bypass_group_dn == "CN=MFA_ProofUpBypass,OU=Groups,DC=uni,DC=test"
    assert seed.privileged_group_dn == "CN=Domain Admins,CN=Users,DC=uni,DC=test"
    assert ada.password, "default_password fills in"


def test_object_ids_are_stable_across_loads():
    assert [u.object_id for u in load_seed().users] == [u.object_id for u in load_seed().users]


@pytest.mark.parametrize(
    "body, message",
    [
        ("users: [{upn: a@x.test, password: p, state: sleepy}]", "unknown state 'sleepy'"),
        ("users: [{upn: a@x.test, password: p, methods: [pigeon]}]", "unknown method"),
        ("users: [{upn: a@x.test}]", "no password"),
        ("users: [{password: p}]", "needs a upn"),
        ("users: [{upn: a@x.test, password: p}, {upn: A@x.test, password: p}]", "duplicate upn"),
        ("- just\n- a list", "must hold a mapping"),
        ("users: [unclosed", "cannot read seed file"),
    ],
)
def test_malformed_seed_is_refused_with_the_entry_named(tmp_path, body, message):
    path = tmp_path / "seed.yaml"
    path.write_text(body)
    with pytest.raises(SeedError, match=message):
        load_seed(path)


def test_missing_seed_file_is_named(tmp_path):
    with pytest.raises(SeedError, match="nowhere.yaml"):
        load_seed(tmp_path / "nowhere.yaml")
