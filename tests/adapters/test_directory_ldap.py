"""LdapDirectory on a real Samba AD DC: ranges, TLS, failures, reconnects, several DCs, the test DC itself."""
from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import ldap3
import pytest

from app.adapters import directory as ldap_directory
from app.adapters.directory import LdapDirectory
from app.config import load_settings
from app.domain.directory import DirectoryAuthError, DirectoryError, DirectoryUnavailable, dn_key
from scripts import samba_dc as samba
from tests.fixtures.samba import ca_bundle

pytestmark = pytest.mark.samba

STUDENTS = ["ada.lovelace@uni.test", "alan.turing@uni.test", "grace.hopper@uni.test",
            "barbara.liskov@uni.test", "donald.knuth@uni.test"]


@pytest.fixture
def searches(monkeypatch):
    """Record the attributes asked for and the attribute names answered by every LDAP search."""
    seen: list[tuple[list, list]] = []
    original = ldap3.Connection.search

    def recording(conn, *args, **kwargs):
        outcome = original(conn, *args, **kwargs)
        answered = [name for r in conn.response or [] if r.get("type") == "searchResEntry"
                    for name in r["raw_attributes"]]
        seen.append((kwargs.get("attributes"), answered))
        return outcome

    monkeypatch.setattr(ldap3.Connection, "search", recording)
    return seen


def silent_listener() -> tuple[socket.socket, str]:
    """Listen on a free loopback port, accept connections and never answer (a hung DC)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []

    def accept_forever():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_forever, daemon=True).start()
    return listener, f"ldaps://127.0.0.1:{listener.getsockname()[1]}"


class TestRangeRetrieval:
    @pytest.mark.parametrize("range_size", [1, 2, 3, 5, 1500])
    def test_every_member_comes_back_across_ranges(self, clean_bypass_group, searches, range_size):
        samba_dc = clean_bypass_group
        wanted = [samba_dc.user_dn(upn) for upn in STUDENTS]
        samba_dc.set_members(samba_dc.bypass_group_dn, wanted)
        directory = samba_dc.directory(range_size=range_size)
        searches.clear()
        members = directory.list_members(samba_dc.bypass_group_dn)
        assert sorted(map(dn_key, members)) == sorted(map(dn_key, wanted))
        assert len(members) == len(set(members))
        ranged = [answered[0] for _, answered in searches if answered]
        assert all(name.lower().startswith("member;range=") for name in ranged)
        assert ranged[-1].endswith("-*")  # the server said: this range is the last
        assert len(ranged) == -(-len(wanted) // range_size)  # ceil: one answer per range
        if range_size == 2:
            assert ranged[0].lower() == "member;range=0-1"

    def test_empty_group_lists_nothing(self, clean_bypass_group):
        assert clean_bypass_group.directory(range_size=2).list_members(clean_bypass_group.bypass_group_dn) == []


class TestSpecialCharacters:
    def test_upn_with_filter_metacharacters_is_found_exactly(self, samba_dc):
        odd_upn = "o*brien(x)\\y@uni.test"
        odd_dn = f"CN=O\\, Brien (x),{samba_dc.seed.users_ou},{samba_dc.base_dn}"
        conn = samba_dc.admin()
        try:
            samba._ensure_user(conn, odd_dn, "obrien.x", odd_upn, "O, Brien (x)", "Odd-Pass-2026!", True)
            directory = samba_dc.directory()
            user = directory.find_user(odd_upn.upper())
            assert user is not None and dn_key(user.dn) == dn_key(odd_dn)
            assert directory.find_user("o*@uni.test") is None  # the star is a character, not a wildcard
            assert directory.verify_password(odd_upn, "Odd-Pass-2026!")
            directory.add_member(samba_dc.bypass_group_dn, user.dn)
            assert directory.is_member(samba_dc.bypass_group_dn, user.dn)
            assert directory.remove_member(samba_dc.bypass_group_dn, user.dn)
        finally:
            conn.delete(odd_dn)
            conn.unbind()

    def test_malformed_dn_is_refused_before_any_request(self, samba_dc, searches):
        directory = samba_dc.directory()
        for bad in ["not a dn", "", "<TTL=5,CN=x>", "CN=a,,DC=b"]:
            with pytest.raises(DirectoryError):
                directory.add_member(samba_dc.bypass_group_dn, bad)
        assert searches == []


class TestTls:
    def test_starttls_on_the_plain_port(self, samba_dc):
        directory = samba_dc.directory(urls=[f"ldap://{samba_dc.dc.ip}"], use_starttls=True)
        assert directory.find_user("ada.lovelace@uni.test") is not None

    def test_plain_ldap_without_starttls_is_refused_up_front(self, samba_dc):
        with pytest.raises(ValueError, match="TLS"):
            samba_dc.directory(urls=[f"ldap://{samba_dc.dc.ip}"])

    def test_certificate_from_another_ca_is_refused(self, samba_dc, tmp_path):
        import trustme

        other_ca = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca))
        with pytest.raises(DirectoryUnavailable, match="certificate"):
            samba_dc.directory(ca_file=str(other_ca)).find_user("ada.lovelace@uni.test")

    def test_certificate_must_name_the_host_in_the_url(self, samba_dc, monkeypatch):
        # Resolve two names to the DC's address: its certificate names dc1.uni.test, not the other.
        real_getaddrinfo = socket.getaddrinfo

        def resolve(host, *args, **kwargs):
            if host in ("dc1.uni.test", "impostor.uni.test"):
                host = samba_dc.dc.ip
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        assert samba_dc.directory(urls=["ldaps://dc1.uni.test"]).find_user("ada.lovelace@uni.test") is not None
        with pytest.raises(DirectoryUnavailable, match="certificate"):
            samba_dc.directory(urls=["ldaps://impostor.uni.test"]).find_user("ada.lovelace@uni.test")


class TestFailures:
    def test_dc_down_is_unavailable_quickly(self, samba_dc):
        down = f"ldaps://{samba.free_loopback_ip()}"
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable, match="did not answer"):
            samba_dc.directory(urls=[down]).find_user("ada.lovelace@uni.test")
        assert time.monotonic() - started < 2

    def test_health_check_binds_on_every_dc_once_each_on_its_own_connections(self, samba_dc):
        down = f"ldaps://{samba.free_loopback_ip()}"
        directory = samba_dc.directory(urls=[samba_dc.urls[0], down])
        operations: list[tuple[str, bool]] = []
        directory.observe_operations(lambda dc, ok: operations.append((dc, ok)))
        checked = directory.check_servers()
        assert checked[samba_dc.urls[0]] is None
        assert isinstance(checked[down], DirectoryUnavailable) and "did not answer" in str(checked[down])
        assert sorted(operations) == sorted([(samba_dc.urls[0], True), (down, False)])  # no retry of the dead one
        assert directory._links[0]._conn is None  # the look-ups' shared connection was neither used nor opened

    def test_health_check_names_a_wrong_password(self, samba_dc):
        checked = samba_dc.directory(password="not-the-password").check_servers()
        assert isinstance(checked[samba_dc.urls[0]], DirectoryAuthError)

    def test_hung_dc_times_out(self, samba_dc):
        listener, url = silent_listener()
        try:
            started = time.monotonic()
            with pytest.raises(DirectoryUnavailable):
                samba_dc.directory(urls=[url], timeout=1.0).find_user("ada.lovelace@uni.test")
            elapsed = time.monotonic() - started
            assert 1 <= elapsed < 5  # two attempts of one second each, plus a pause
        finally:
            listener.close()

    def test_wrong_bind_password_is_an_auth_error_and_not_retried(self, samba_dc, monkeypatch):
        opened = []
        original = LdapDirectory._open
        monkeypatch.setattr(LdapDirectory, "_open", lambda self, *a: opened.append(1) or original(self, *a))
        with pytest.raises(DirectoryAuthError, match="wrong DN or password"):
            samba_dc.directory(password="not-the-password").find_user("ada.lovelace@uni.test")
        assert len(opened) == 1

    def test_ttl_membership_is_refused_by_samba_with_a_clear_message(self, clean_bypass_group):
        directory = clean_bypass_group.directory(use_ttl=True)
        ada = clean_bypass_group.user_dn("ada.lovelace@uni.test")
        with pytest.raises(DirectoryError, match="Privileged Access Management"):
            directory.add_member(clean_bypass_group.bypass_group_dn, ada, ttl_seconds=1800)
        assert clean_bypass_group.members(clean_bypass_group.bypass_group_dn) == []
        assert directory.add_member(clean_bypass_group.bypass_group_dn, ada) is True  # no TTL asked: plain add

    def test_check_write_access_names_a_missing_group(self, samba_dc):
        with pytest.raises(DirectoryError):
            samba_dc.directory().check_write_access(f"CN=No Such Group,{samba_dc.seed.groups_ou},{samba_dc.base_dn}")

    def test_reconnects_after_the_dc_restarts(self, samba_dc):
        directory = samba_dc.directory()
        assert directory.find_user("ada.lovelace@uni.test") is not None
        samba_dc.stop()
        try:
            with pytest.raises(DirectoryUnavailable):
                directory.find_user("ada.lovelace@uni.test")
        finally:
            samba_dc.start()
        assert directory.find_user("ada.lovelace@uni.test") is not None


class TestConnectionReuse:
    def test_one_bind_serves_many_calls(self, samba_dc, monkeypatch):
        opened = []
        original = LdapDirectory._open
        monkeypatch.setattr(LdapDirectory, "_open", lambda self, *a: opened.append(1) or original(self, *a))
        directory = samba_dc.directory()
        for upn in STUDENTS:
            directory.find_user(upn)
        directory.is_member(samba_dc.bypass_group_dn, samba_dc.user_dn(STUDENTS[0]))
        assert len(opened) == 1

    def test_threads_share_a_directory_safely(self, clean_bypass_group):
        samba_dc = clean_bypass_group
        directory = samba_dc.directory()

        def unlock_and_check(upn: str) -> bool:
            user = directory.find_user(upn)
            directory.add_member(samba_dc.bypass_group_dn, user.dn)
            return directory.is_member(samba_dc.bypass_group_dn, user.dn) and user.upn == upn

        with ThreadPoolExecutor(max_workers=len(STUDENTS)) as pool:
            assert all(pool.map(unlock_and_check, STUDENTS * 3))
        assert len(samba_dc.members(samba_dc.bypass_group_dn)) == len(STUDENTS)


class TestSeveralDcs:
    @pytest.fixture
    def both(self, samba_dc2, clean_bypass_group, tmp_path):
        bundle = ca_bundle(tmp_path / "cas.pem", clean_bypass_group, samba_dc2)
        directory = clean_bypass_group.directory(urls=[clean_bypass_group.url, samba_dc2.url], ca_file=bundle)
        yield clean_bypass_group, samba_dc2, directory, bundle
        directory.close()

    def test_a_dc_that_never_sees_the_write_is_reported_lagging(self, both):
        first, second, directory, bundle = both
        ada = first.user_dn("ada.lovelace@uni.test")
        assert directory.add_member(first.bypass_group_dn, ada)
        assert second.members(second.bypass_group_dn) == []  # the write went to the first DC only
        started = time.monotonic()
        check = directory.confirm_membership(first.bypass_group_dn, ada, timeout_seconds=1.0)
        assert 1.0 <= time.monotonic() - started < 3
        assert check.agreeing == (first.url,) and check.lagging == (second.url,) and not check.confirmed

        second.directory(ca_file=bundle).add_member(second.bypass_group_dn, ada)  # "replication" arrives
        check = directory.confirm_membership(first.bypass_group_dn, ada, timeout_seconds=1.0)
        assert check.confirmed and check.agreeing == (first.url, second.url)

    def test_waits_until_a_late_dc_catches_up(self, both):
        first, second, directory, bundle = both
        ada = first.user_dn("ada.lovelace@uni.test")
        directory.add_member(first.bypass_group_dn, ada)
        late = threading.Timer(1.0, lambda: second.set_members(second.bypass_group_dn, [ada]))
        late.start()
        check = directory.confirm_membership(first.bypass_group_dn, ada, timeout_seconds=10.0)
        late.join()
        assert check.confirmed

    def test_removal_is_confirmed_the_same_way(self, both):
        first, second, directory, _ = both
        ada = first.user_dn("ada.lovelace@uni.test")
        second.set_members(second.bypass_group_dn, [ada])
        check = directory.confirm_membership(first.bypass_group_dn, ada, present=False, timeout_seconds=0.5)
        assert check.agreeing == (first.url,) and check.lagging == (second.url,)

    def test_a_dc_that_is_down_is_reported_as_an_error(self, clean_bypass_group):
        down = f"ldaps://{samba.free_loopback_ip()}"
        directory = clean_bypass_group.directory(urls=[clean_bypass_group.url, down])
        ada = clean_bypass_group.user_dn("ada.lovelace@uni.test")
        directory.add_member(clean_bypass_group.bypass_group_dn, ada)
        check = directory.confirm_membership(clean_bypass_group.bypass_group_dn, ada, timeout_seconds=0.5)
        assert check.agreeing == (clean_bypass_group.url,) and check.lagging == ()
        assert "did not answer" in check.errors[down] and not check.confirmed

    def test_a_hung_dc_cannot_stretch_the_bounded_wait(self, clean_bypass_group):
        listener, hung = silent_listener()
        try:
            directory = clean_bypass_group.directory(urls=[clean_bypass_group.url, hung], timeout=5.0)
            ada = clean_bypass_group.user_dn("ada.lovelace@uni.test")
            directory.add_member(clean_bypass_group.bypass_group_dn, ada)
            started = time.monotonic()
            check = directory.confirm_membership(clean_bypass_group.bypass_group_dn, ada, timeout_seconds=1.0)
            assert time.monotonic() - started < 2.5
            assert check.agreeing == (clean_bypass_group.url,) and "no answer" in check.errors[hung]
        finally:
            listener.close()


class TestSettingsAndTestDc:
    def test_from_settings_uses_the_portal_environment(self, samba_dc):
        settings = load_settings({**samba_dc.env(), "PROOFUP_SECRET_KEY": "x" * 32,
                                  "PROOFUP_AUTHORITY": "https://adfs.uni.test/adfs", "PROOFUP_CLIENT_ID": "c"})
        directory = LdapDirectory.from_settings(settings)
        assert directory.servers() == (samba_dc.url,)
        assert directory.check_write_access(settings.bypass_group_dn)

    def test_populate_again_changes_nothing(self, samba_dc):
        def snapshot():
            conn = samba_dc.admin()
            try:
                conn.search(samba_dc.base_dn, "(|(objectClass=user)(objectClass=group))",
                            attributes=["member", "userAccountControl", "adminCount"])
                return {e.entry_dn: e.entry_attributes_as_dict for e in conn.entries}
            finally:
                conn.unbind()

        before = snapshot()
        samba.populate(samba_dc.dc, samba_dc.seed, samba_dc.service_password)
        assert snapshot() == before
        assert samba_dc.directory().verify_password("ada.lovelace@uni.test", "Proofup-Demo-2026!")

    def test_service_account_may_write_the_bypass_group_only(self, samba_dc):
        directory = samba_dc.directory()
        conn = samba_dc.admin()
        try:
            conn.search(samba_dc.base_dn, "(objectClass=group)", attributes=[])
            groups = [e.entry_dn for e in conn.entries]
        finally:
            conn.unbind()
        writable = [g for g in groups if directory.check_write_access(g)]
        assert [dn_key(g) for g in writable] == [dn_key(samba_dc.bypass_group_dn)]

    def test_up_refuses_an_address_another_dc_holds(self, samba_dc, tmp_path):
        with pytest.raises(samba.SambaError, match="already has a server"):
            samba.up(tmp_path / "dc", samba_dc.seed, samba_dc.dc.ip)
        assert not (tmp_path / "dc").exists()

    def test_down_without_a_dc_says_so(self, tmp_path, capsys):
        assert samba.main(["down", "--dir", str(tmp_path)]) == 0
        assert "no DC running" in capsys.readouterr().out


def test_every_operation_is_told_to_the_observer_with_its_dc_and_outcome(samba_dc):
    seen: list[tuple[str, bool]] = []
    directory = samba_dc.directory()
    directory.observe_operations(lambda dc, ok: seen.append((dc, ok)))
    try:
        assert directory.find_user(STUDENTS[0]) is not None
        with pytest.raises(DirectoryError):
            directory.writable_attributes("CN=No Such Group," + samba_dc.base_dn)
    finally:
        directory.close()
    assert seen and all(dc == samba_dc.urls[0] for dc, _ in seen)
    assert seen[-1] == (samba_dc.urls[0], False) and (samba_dc.urls[0], True) in seen
