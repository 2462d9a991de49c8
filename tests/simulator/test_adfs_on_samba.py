"""The simulated AD FS against a real Samba AD DC: passwords by LDAP bind, policy from AD group membership."""
from __future__ import annotations

import pytest

from tests.simulator.browserless import Browserless
from tests.simulator.test_mysignins import NOTICE, open_security_info

STUDENT = "alan.turing@uni.test"


@pytest.mark.samba
def test_adfs_reads_passwords_and_groups_from_active_directory(simulator_factory, clean_bypass_group):
    dc = clean_bypass_group
    sim = simulator_factory("--directory", "ldap", env=dc.env())
    wrong = Browserless(sim.session(), "http://never")
    form = wrong.submit(wrong.go(sim.mysignins_url), {"login": STUDENT})
    assert "Incorrect user ID or password" in wrong.submit(form, {"UserName": STUDENT, "Password": "nope"}).text

    assert NOTICE in open_security_info(sim, Browserless(sim.session(), "http://never"), STUDENT).text
    directory = dc.directory()
    try:
        directory.add_member(dc.bypass_group_dn, dc.user_dn(STUDENT))  # as the portal's service account
        page = open_security_info(sim, Browserless(sim.session(), "http://never"), STUDENT)
        assert 'id="signedInAs"' in page.text
    finally:
        directory.remove_member(dc.bypass_group_dn, dc.user_dn(STUDENT))
        directory.close()
    assert NOTICE in open_security_info(sim, Browserless(sim.session(), "http://never"), STUDENT).text
