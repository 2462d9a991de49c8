"""LdapDirectory against a scripted fake of AD's LDAP answers: what Samba cannot show.

Samba has no time-to-live memberships (Privileged Access Management) and does not cap `member`
ranges, and it cannot be told to be busy on demand; these tests cover those paths with a fake
connection that answers the way Windows AD documents it.
"""
from __future__ import annotations

import re
import socket

import pytest
from ldap3.core import exceptions as lx

from app.adapters import directory as ldap_directory
from app.adapters.directory import LdapDirectory
from app.config import load_settings
from app.domain.directory import (
    DirectoryAuthError,
    DirectoryError,
    DirectoryPermissionError,
    DirectoryUnavailable,
    dn_key,
)

GROUP = "CN=MFA_ProofUpBypass,OU=Groups,DC=uni,DC=test"
OTHER_GROUP = "CN=MFA_Required,OU=Groups,DC=uni,DC=test"
ADA = "CN=Ada Lovelace,OU=Students,DC=uni,DC=test"
TTL_VALUE = re.compile(r"^<TTL=(\d+),(.*)>$")


def ldap_error(code: int) -> lx.LDAPOperationResult:
    return lx.LDAPOperationResult(result=code, description=f"code{code}", message="from the fake")


class FakeAD:
    """A tiny AD: one writable group, TTL links that expire on a fake clock, MaxValRange-capped reads."""

    def __init__(self, max_val_range: int = 1500):
        self.max_val_range = max_val_range
        self.now = 0.0
        self.members: dict[str, tuple[str, float | None]] = {}  # dn_key -> (dn, expiry)
        self.writes: list[tuple[str, str, str]] = []  # (group, operation, value as sent)
        self.failures: list[Exception] = []  # raised by the next operations, in order
        self.opened = 0

    def live(self) -> list[str]:
        return [dn for dn, expiry in self.members.values() if expiry is None or expiry > self.now]

    def connection(self) -> "FakeConnection":
        self.opened += 1
        return FakeConnection(self)


class FakeConnection:
    def __init__(self, ad: FakeAD):
        self.ad = ad
        self.response: list[dict] = []
        self.result: dict = {}

    def _maybe_fail(self) -> None:
        if self.ad.failures:
            raise self.ad.failures.pop(0)

    def modify(self, dn, changes):
        self._maybe_fail()
        (operation, values), = changes["member"]
        value = values[0]
        self.ad.writes.append((dn, operation, value))
        if dn_key(dn) != dn_key(GROUP):
            raise ldap_error(50)
        ttl = TTL_VALUE.match(value)
        member = ttl.group(2) if ttl else value
        present = dn_key(member) in self.ad.members and member in self.ad.live()
        if operation == "MODIFY_ADD":
            if present:
                raise ldap_error(68)
            self.ad.members[dn_key(member)] = (member, self.ad.now + int(ttl.group(1)) if ttl else None)
        else:
            if not present:
                raise ldap_error(53)
            del self.ad.members[dn_key(member)]
        return True

    def search(self, base, search_filter, scope, attributes=None, **_):
        self._maybe_fail()
        members = self.ad.live()
        if search_filter.startswith("(member="):
            wanted = search_filter[len("(member="):-1]
            hit = any(dn_key(m) == dn_key(wanted) for m in members)
            self.response = [{"type": "searchResEntry", "dn": base, "attributes": {}, "raw_attributes": {}}] if hit else []
            return hit
        low, high = re.match(r"member;range=(\d+)-(\d+|\*)", attributes[0]).groups()
        low = int(low)
        high = len(members) - 1 if high == "*" else int(high)
        high = min(high, low + self.ad.max_val_range - 1)
        last = high >= len(members) - 1
        name = f"member;range={low}-{'*' if last else high}"
        raw = {name: [m.encode() for m in members[low:high + 1]]} if members else {}
        self.response = [{"type": "searchResEntry", "dn": base, "attributes": {}, "raw_attributes": raw}]
        return True

    def unbind(self):
        pass


@pytest.fixture
def ad(monkeypatch):
    fake = FakeAD()

    def open_fake(self, server, user, password):
        if fake.failures and isinstance(fake.failures[0], lx.LDAPInvalidCredentialsResult):
            raise fake.failures.pop(0)
        return fake.connection()

    monkeypatch.setattr(LdapDirectory, "_open", open_fake)
    monkeypatch.setattr(ldap_directory, "RETRY_PAUSE", 0)
    return fake


def make(**kwargs) -> LdapDirectory:
    return LdapDirectory(["ldaps://dc1.uni.test", "ldaps://dc2.uni.test"], "CN=svc,DC=uni,DC=test", "pw",
                         "DC=uni,DC=test", **kwargs)


class TestTimeToLive:
    def test_ttl_membership_is_sent_as_ad_expects_and_expires(self, ad):
        directory = make(use_ttl=True)
        assert directory.add_member(GROUP, ADA, ttl_seconds=1800) is True
        assert ad.writes == [(GROUP, "MODIFY_ADD", f"<TTL=1800,{ADA}>")]
        assert directory.is_member(GROUP, ADA)
        ad.now += 1801  # the forest drops the link by itself
        assert not directory.is_member(GROUP, ADA)
        assert directory.list_members(GROUP) == []

    def test_ttl_add_of_a_present_member_is_already_so(self, ad):
        directory = make(use_ttl=True)
        directory.add_member(GROUP, ADA, ttl_seconds=60)
        assert directory.add_member(GROUP, ADA, ttl_seconds=60) is False

    def test_ttl_is_ignored_when_the_forest_lacks_it(self, ad):
        make(use_ttl=False).add_member(GROUP, ADA, ttl_seconds=1800)
        assert ad.writes == [(GROUP, "MODIFY_ADD", ADA)]

    @pytest.mark.parametrize("ttl", [0, -5, 1.5, "60", True])
    def test_nonsense_ttl_is_refused_before_writing(self, ad, ttl):
        with pytest.raises(DirectoryError, match="time-to-live"):
            make(use_ttl=True).add_member(GROUP, ADA, ttl_seconds=ttl)
        assert ad.writes == []

    def test_plain_remove_ends_a_ttl_membership(self, ad):
        directory = make(use_ttl=True)
        directory.add_member(GROUP, ADA, ttl_seconds=60)
        assert directory.remove_member(GROUP, ADA) is True
        assert ad.writes[-1] == (GROUP, "MODIFY_DELETE", ADA)


class TestRanges:
    def test_a_server_that_caps_ranges_below_the_request_is_followed(self, ad):
        ad.max_val_range = 3  # AD answers at most MaxValRange values whatever the client asks
        for i in range(10):
            ad.members[f"k{i}"] = (f"CN=S{i},OU=Students,DC=uni,DC=test", None)
        assert directory_list(make(range_size=1500)) == [f"CN=S{i},OU=Students,DC=uni,DC=test" for i in range(10)]

    def test_exact_multiple_of_the_range_ends_cleanly(self, ad):
        for i in range(6):
            ad.members[f"k{i}"] = (f"CN=S{i},OU=Students,DC=uni,DC=test", None)
        assert len(directory_list(make(range_size=3))) == 6


def directory_list(directory: LdapDirectory) -> list[str]:
    return directory.list_members(GROUP)


class TestErrors:
    def test_busy_dc_is_retried_once_on_a_fresh_connection(self, ad):
        ad.failures = [ldap_error(51)]
        assert make().add_member(GROUP, ADA) is True
        assert ad.opened == 2

    def test_lost_connection_is_retried_then_reported(self, ad):
        ad.failures = [lx.LDAPSocketReceiveError("gone"), lx.LDAPSessionTerminatedByServerError("gone again")]
        with pytest.raises(DirectoryUnavailable, match="dc1.uni.test did not answer"):
            make().add_member(GROUP, ADA)

    def test_socket_timeout_is_unavailable(self, ad):
        ad.failures = [socket.timeout("timed out"), socket.timeout("timed out")]
        with pytest.raises(DirectoryUnavailable):
            make().find_user("ada.lovelace@uni.test")

    @pytest.mark.parametrize("code, error, text", [
        (50, DirectoryPermissionError, "may not"),
        (32, DirectoryError, "no such entry"),
        (8, DirectoryError, "requires TLS"),
        (19, DirectoryError, "code19"),
    ])
    def test_hard_errors_are_typed_and_not_retried(self, ad, code, error, text):
        ad.failures = [ldap_error(code)]
        with pytest.raises(error, match=text) as caught:
            make().add_member(GROUP, ADA)
        assert type(caught.value) is error
        assert ad.opened == 1 and ad.members == {}

    def test_remove_of_a_non_member_is_already_so_but_other_53s_are_not_swallowed_on_add(self, ad):
        directory = make()
        assert directory.remove_member(GROUP, ADA) is False
        ad.failures = [ldap_error(53)]
        with pytest.raises(DirectoryError):
            directory.add_member(GROUP, ADA)

    def test_wrong_service_password_is_an_auth_error(self, ad):
        ad.failures = [ldap_error(49)]
        with pytest.raises(DirectoryAuthError):
            make().list_members(GROUP)

    def test_a_refused_write_keeps_the_connection(self, ad):
        directory = make()
        with pytest.raises(DirectoryPermissionError):
            directory.add_member(OTHER_GROUP, ADA)
        assert directory.add_member(GROUP, ADA) is True
        assert ad.opened == 1

    def test_writing_another_group_changes_nothing(self, ad):
        with pytest.raises(DirectoryPermissionError):
            make().add_member(OTHER_GROUP, ADA)
        assert ad.members == {}


class TestConfiguration:
    @pytest.mark.parametrize("urls", [[], ["http://dc1"], ["ldaps://"], ["ldap://dc1.uni.test"]])
    def test_unusable_urls_are_refused(self, urls):
        with pytest.raises(ValueError):
            LdapDirectory(urls, "CN=svc,DC=uni,DC=test", "pw", "DC=uni,DC=test")

    def test_missing_credentials_are_refused(self):
        with pytest.raises(ValueError):
            LdapDirectory(["ldaps://dc1"], "CN=svc,DC=uni,DC=test", "", "DC=uni,DC=test")

    def test_settings_with_plain_ldap_urls_mean_starttls(self):
        settings = load_settings({
            "PROOFUP_SECRET_KEY": "s" * 32, "PROOFUP_AUTHORITY": "https://adfs.uni.test/adfs",
            "PROOFUP_CLIENT_ID": "c", "PROOFUP_LDAP_URL": "ldap://dc1.uni.test, ldap://dc2.uni.test:1389",
            "PROOFUP_LDAP_BIND_DN": "CN=svc,DC=uni,DC=test", "PROOFUP_LDAP_PASSWORD": "pw",
            "PROOFUP_LDAP_BASE_DN": "DC=uni,DC=test", "PROOFUP_REQUIRED_GROUP_DN": OTHER_GROUP,
            "PROOFUP_BYPASS_GROUP_DN": GROUP, "PROOFUP_LDAP_USE_TTL": "true",
        })
        directory = LdapDirectory.from_settings(settings)
        assert directory.servers() == ("ldap://dc1.uni.test", "ldap://dc2.uni.test:1389")
        assert [link.server.port for link in directory._links] == [389, 1389]
        assert not any(link.server.ssl for link in directory._links)

    def test_the_password_never_shows_in_errors(self, ad):
        ad.failures = [ldap_error(49)]
        with pytest.raises(DirectoryAuthError) as caught:
            LdapDirectory(["ldaps://dc1"], "CN=svc,DC=uni,DC=test", "S3cret-Value!", "DC=uni,DC=test").list_members(GROUP)
        assert "S3cret-Value!" not in str(caught.value) and "S3cret-Value!" not in repr(caught.value)
