"""One contract, two directories: the embedded demo directory must answer exactly like LDAP on a real AD DC."""
from __future__ import annotations

import pytest

from app.adapters.directory_embedded import EmbeddedDirectory
from app.domain.directory import DirectoryError, DirectoryPermissionError, dn_key
from app.seed import load_seed

SEED = load_seed()
PASSWORD = SEED.user("ada.lovelace@uni.test").password
ADA = "ada.lovelace@uni.test"
GRACE = "grace.hopper@uni.test"
STUDENTS_OU = f"{SEED.users_ou},{SEED.base_dn}"


@pytest.fixture(params=["embedded", "embedded-file", pytest.param("samba", marks=pytest.mark.samba)])
def directory(request, tmp_path):
    """Yield the directory under test, its bypass group empty, as the least-privileged service account."""
    if request.param == "embedded":
        directory = EmbeddedDirectory(SEED, writable_group_dns=[SEED.bypass_group_dn])
    elif request.param == "embedded-file":  # the demo's: kept in a state file that other processes share
        directory = EmbeddedDirectory(SEED, writable_group_dns=[SEED.bypass_group_dn],
                                      state_file=tmp_path / "directory.json")
    else:
        handle = request.getfixturevalue("clean_bypass_group")
        directory = handle.directory()
    yield directory
    directory.close()


def dn_of(upn: str) -> str:
    return SEED.user_dn(SEED.user(upn))


def keys(dns) -> set[str]:
    return {dn_key(dn) for dn in dns}


class TestFindUser:
    def test_finds_a_student_by_upn_whatever_the_case(self, directory):
        user = directory.find_user("Ada.LOVELACE@uni.test")
        assert user is not None
        assert dn_key(user.dn) == dn_key(dn_of(ADA))
        assert (user.upn, user.sam_account_name, user.display_name) == (ADA, "ada.lovelace", "Ada Lovelace")
        assert user.enabled and user.admin_count == 0
        assert user.in_group(SEED.required_group_dn)
        assert not user.in_group(SEED.bypass_group_dn)

    def test_carries_the_mail_address_and_preferred_language_the_notices_need(self, directory):
        ada, grace = directory.find_user(ADA), directory.find_user(GRACE)
        assert (ada.mail, ada.preferred_language) == (ADA, "")  # the seed's mail defaults to the UPN
        assert (grace.mail, grace.preferred_language) == (GRACE, "de-DE")

    @pytest.mark.parametrize("upn", ["nobody@uni.test", "*", "*)(uid=*", "ada.lovelace@uni.test)(cn=*",
                                     "*@uni.test", "ada*", "\\2a", "", "   "])
    def test_unknown_and_nasty_input_finds_nobody(self, directory, upn):
        assert directory.find_user(upn) is None

    def test_nested_membership_counts_as_required(self, directory):
        user = directory.find_user("edsger.dijkstra@uni.test")
        assert user.in_group(SEED.required_group_dn)
        assert user.in_group(SEED.nested_required_group_dn)

    def test_not_required_student_is_in_no_mfa_group(self, directory):
        user = directory.find_user("margaret.hamilton@uni.test")
        assert not user.in_group(SEED.required_group_dn)

    def test_privileged_and_disabled_accounts_show_what_policy_needs(self, directory):
        admin = directory.find_user("ken.thompson@uni.test")
        assert admin.admin_count == 1 and admin.in_group(SEED.privileged_group_dn)
        disabled = directory.find_user("dennis.ritchie@uni.test")
        assert disabled is not None and not disabled.enabled


class TestPassword:
    def test_right_password(self, directory):
        assert directory.verify_password(ADA, PASSWORD)

    def test_upn_case_and_spaces_do_not_matter_for_the_password_check(self, directory):
        assert directory.verify_password("  ADA.Lovelace@UNI.test ", PASSWORD)
        assert directory.find_user(" ada.lovelace@uni.test ").upn == ADA

    @pytest.mark.parametrize("password", ["wrong", PASSWORD.lower(), PASSWORD + " ", "", "*"])
    def test_wrong_or_empty_password(self, directory, password):
        assert not directory.verify_password(ADA, password)

    def test_disabled_account_never_passes(self, directory):
        assert not directory.verify_password("dennis.ritchie@uni.test", PASSWORD)

    def test_unknown_user(self, directory):
        assert not directory.verify_password("nobody@uni.test", PASSWORD)


class TestMembership:
    def test_add_is_idempotent(self, directory):
        group = SEED.bypass_group_dn
        assert directory.add_member(group, dn_of(ADA)) is True
        assert directory.add_member(group, dn_of(ADA)) is False
        assert directory.is_member(group, dn_of(ADA))
        assert keys(directory.list_members(group)) == {dn_key(dn_of(ADA))}

    def test_remove_is_idempotent(self, directory):
        group = SEED.bypass_group_dn
        directory.add_member(group, dn_of(ADA))
        assert directory.remove_member(group, dn_of(ADA)) is True
        assert directory.remove_member(group, dn_of(ADA)) is False
        assert not directory.is_member(group, dn_of(ADA))
        assert directory.list_members(group) == []

    def test_membership_shows_up_in_the_user_groups(self, directory):
        directory.add_member(SEED.bypass_group_dn, dn_of(GRACE))
        assert directory.find_user(GRACE).in_group(SEED.bypass_group_dn)

    def test_list_shows_every_member_and_is_member_compares_dns_loosely(self, directory):
        upns = [ADA, GRACE, "alan.turing@uni.test", "donald.knuth@uni.test"]
        for upn in upns:
            directory.add_member(SEED.bypass_group_dn, dn_of(upn))
        assert keys(directory.list_members(SEED.bypass_group_dn)) == {dn_key(dn_of(u)) for u in upns}
        assert directory.is_member(SEED.bypass_group_dn, dn_of(GRACE).upper())
        assert not directory.is_member(SEED.bypass_group_dn, dn_of("barbara.liskov@uni.test"))

    def test_confirm_on_every_dc(self, directory):
        directory.add_member(SEED.bypass_group_dn, dn_of(ADA))
        check = directory.confirm_membership(SEED.bypass_group_dn, dn_of(ADA), present=True, timeout_seconds=1)
        assert check.confirmed and check.agreeing == tuple(directory.servers())
        absent = directory.confirm_membership(SEED.bypass_group_dn, dn_of(GRACE), present=False, timeout_seconds=1)
        assert absent.confirmed

    def test_confirm_reports_lagging_after_a_bounded_wait(self, directory):
        check = directory.confirm_membership(SEED.bypass_group_dn, dn_of(ADA), present=True, timeout_seconds=0.5)
        assert not check.confirmed and check.lagging == tuple(directory.servers())

    def test_writing_another_group_is_refused_and_changes_nothing(self, directory):
        before = keys(directory.list_members(SEED.required_group_dn))
        with pytest.raises(DirectoryPermissionError):
            directory.add_member(SEED.required_group_dn, dn_of("margaret.hamilton@uni.test"))
        with pytest.raises(DirectoryPermissionError):
            directory.remove_member(SEED.required_group_dn, dn_of(ADA))
        assert keys(directory.list_members(SEED.required_group_dn)) == before

    def test_write_access_is_checked_without_writing(self, directory):
        assert directory.check_write_access(SEED.bypass_group_dn) is True
        assert directory.check_write_access(SEED.required_group_dn) is False
        assert directory.list_members(SEED.bypass_group_dn) == []


class TestSearchUsers:
    """The desk's look-up: an escaped prefix search over UPN, account name, display, given name and surname."""

    @pytest.mark.parametrize("prefix", ["ada", "ADA.Love", "Lovelace", "ada.lovelace@uni.test"])
    def test_finds_by_upn_name_or_surname_prefix(self, directory, prefix):
        assert [u.upn for u in directory.search_users(prefix, 10)] == [ADA]

    def test_a_common_prefix_finds_several_sorted_and_bounded(self, directory):
        found = [u.upn for u in directory.search_users("a", 10)]
        assert found[:2] == [ADA, "alan.turing@uni.test"] and found == sorted(found)
        assert len(directory.search_users("a", 1)) == 1

    @pytest.mark.parametrize("prefix", ["*", "*)(objectClass=*", "ada*)(|(cn=*", "\\2a", ")", "", "   ",
                                        "nobody"])
    def test_injection_and_nonsense_find_nobody(self, directory, prefix):
        assert directory.search_users(prefix, 10) == []

    def test_staff_roles_come_from_groups_with_nesting(self, directory):
        desk = directory.find_user("hedy.lamarr@uni.test")
        auditor = directory.find_user("katherine.johnson@uni.test")
        assert desk.in_group(SEED.helpdesk_group_dn) and not desk.in_group(SEED.auditor_group_dn)
        assert desk.in_group(SEED.service_desk_group_dn)  # the direct one; the helpdesk group only through nesting
        assert auditor.in_group(SEED.auditor_group_dn) and not auditor.in_group(SEED.helpdesk_group_dn)


class TestFindUsers:
    """Many students at once (bulk diagnosis): few searches, each user with the asked groups only."""

    POLICY_GROUPS = [SEED.required_group_dn, SEED.bypass_group_dn, SEED.privileged_group_dn]

    def test_finds_many_with_their_membership_of_the_asked_groups_only(self, directory):
        found = directory.find_users([ADA, "EDSGER.Dijkstra@uni.test ", "ken.thompson@uni.test", "nobody@uni.test",
                                      "margaret.hamilton@uni.test"], self.POLICY_GROUPS)
        assert set(found) == {ADA, "edsger.dijkstra@uni.test", "ken.thompson@uni.test", "margaret.hamilton@uni.test"}
        assert found[ADA].group_dns == {dn_key(SEED.required_group_dn)}
        assert found["edsger.dijkstra@uni.test"].in_group(SEED.required_group_dn)  # through the nested cohort
        assert not found["edsger.dijkstra@uni.test"].in_group(SEED.nested_required_group_dn)  # not asked for
        assert found["ken.thompson@uni.test"].in_group(SEED.privileged_group_dn)
        assert found["margaret.hamilton@uni.test"].group_dns == frozenset()

    def test_each_user_is_what_find_user_says_within_the_asked_groups(self, directory):
        directory.add_member(SEED.bypass_group_dn, dn_of(GRACE))
        upns = [u.upn for u in SEED.users] + [f"ghost{i}@uni.test" for i in range(150)]  # two searches' worth
        found = directory.find_users(upns, self.POLICY_GROUPS)
        asked = {dn_key(g) for g in self.POLICY_GROUPS}
        for upn in upns:
            one = directory.find_user(upn)
            if one is None:
                assert upn not in found
                continue
            many = found[upn]
            assert (dn_key(many.dn), many.upn, many.enabled, many.admin_count, many.mail, many.display_name) == (
                dn_key(one.dn), one.upn, one.enabled, one.admin_count, one.mail, one.display_name)
            assert many.group_dns == one.group_dns & asked, upn
        assert found[GRACE].in_group(SEED.bypass_group_dn)

    @pytest.mark.parametrize("upns", [["*"], ["*)(userPrincipalName=*"], ["ada*"], ["\\2a"], [""], []])
    def test_injection_and_nonsense_find_nobody(self, directory, upns):
        assert directory.find_users(upns, self.POLICY_GROUPS) == {}


class TestUsersInGroupOrOu:
    """Who a scan looks at: the users of a group (nested, ranged) or of an OU, the same from both directories."""

    def test_a_group_lists_its_users_through_nested_groups(self, directory):
        found = [u.upn for u in directory.users_in_group(SEED.required_group_dn, 100)]
        expected = sorted(u.upn for u in SEED.users if u.in_directory and u.mfa_required)
        assert found == expected and "edsger.dijkstra@uni.test" in found  # a member of the nested cohort group
        assert all(u.group_dns == frozenset() for u in directory.users_in_group(SEED.required_group_dn, 100))

    def test_a_large_group_is_read_in_ranges(self, directory):
        upns = [u.upn for u in SEED.users if u.in_directory]
        for upn in upns:
            directory.add_member(SEED.bypass_group_dn, dn_of(upn))
        if hasattr(directory, "_range_size"):
            directory._range_size = 3  # AD hands out 1,500 values at a time; Samba all at once unless asked
        assert [u.upn for u in directory.users_in_group(SEED.bypass_group_dn, 100)] == sorted(upns)

    def test_more_users_than_the_limit_is_refused_not_cut(self, directory):
        with pytest.raises(DirectoryError):
            directory.users_in_group(SEED.required_group_dn, 2)
        with pytest.raises(DirectoryError):
            directory.users_under(STUDENTS_OU, 2)

    def test_an_ou_lists_the_users_under_it(self, directory):
        ou = STUDENTS_OU
        found = [u.upn for u in directory.users_under(ou, 100)]
        assert ADA in found and "ken.thompson@uni.test" in found and found == sorted(found)
        assert "radia.perlman@uni.test" in found  # in AD though not in Entra

    @pytest.mark.parametrize("dn", ["CN=Nobody,OU=Groups,DC=uni,DC=test", "not a dn", "CN=x)(objectClass=*",
                                    "", "<GUID=1234>"])
    def test_a_missing_or_malformed_group_is_an_error(self, directory, dn):
        with pytest.raises(DirectoryError):
            directory.users_in_group(dn, 100)

    def test_a_user_is_not_a_group(self, directory):
        with pytest.raises(DirectoryError):
            directory.users_in_group(dn_of(ADA), 100)

    @pytest.mark.parametrize("dn", ["OU=Nowhere,DC=uni,DC=test", "not a dn", ""])
    def test_a_missing_or_malformed_ou_is_an_error(self, directory, dn):
        with pytest.raises(DirectoryError):
            directory.users_under(dn, 100)
