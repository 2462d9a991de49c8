"""The desk's rules without I/O: MFA in the token, roles from groups, the look-up's bounds, safe CSV cells."""
from __future__ import annotations

import pytest

from app.domain.directory import DirectoryUser, dn_key
from app.domain.actors import WORKER, Actor
from app.domain.staff import (ADFS_MFA, StaffGroups, StaffRole, acts_for_desk, look_up_query, may_change_desk_work,
                              shows_mfa)
from app.domain.cells import safe_cell

PASSWORD = "http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password"
DESK_G, AUDIT_G = "CN=Desk,OU=Groups,DC=uni,DC=test", "CN=Audit,OU=Groups,DC=uni,DC=test"


@pytest.mark.parametrize(("claims", "mfa"), [
    ({"amr": [PASSWORD, ADFS_MFA]}, True),
    ({"amr": ADFS_MFA}, True),  # a single value, as some AD FS claim rules issue it
    ({"amr": ["pwd", "mfa"]}, True),  # Entra
    ({"authmethod": ADFS_MFA}, True),
    ({"amr": [PASSWORD]}, False),
    ({"amr": ["pwd"], "authmethod": PASSWORD}, False),
    ({"amr": "multipleauthn"}, False),  # not the claim's value: no guessing on look-alikes
    ({}, False),
])
def test_mfa_is_read_from_amr_or_authmethod(claims, mfa):
    assert shows_mfa(claims) is mfa


def user(*groups, enabled=True):
    return DirectoryUser(dn="CN=X,DC=uni,DC=test", upn="x@uni.test", sam_account_name="x", display_name="X",
                         enabled=enabled, group_dns=frozenset(dn_key(g) for g in groups))


def test_roles_come_from_groups_and_helpdesk_wins():
    groups = StaffGroups(DESK_G, AUDIT_G)
    assert groups.role_of(user(DESK_G, AUDIT_G)) is StaffRole.HELPDESK
    assert groups.role_of(user(AUDIT_G)) is StaffRole.AUDITOR
    assert groups.role_of(user()) is None
    assert groups.role_of(user(DESK_G, enabled=False)) is None
    assert groups.role_of(None) is None
    assert StaffGroups("", "").role_of(user(DESK_G)) is None  # unset settings give nobody a role
    assert StaffRole.HELPDESK.can_act and not StaffRole.AUDITOR.can_act


@pytest.mark.parametrize(("typed", "query"), [("  Ada  Love ", "Ada Love"), ("a", ""), ("", ""), ("x" * 99, "x" * 64)])
def test_look_up_queries_are_trimmed_and_bounded(typed, query):
    assert look_up_query(typed) == query


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("+49 30", "'+49 30"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("ticket 4711", "ticket 4711"), (None, ""), (42, "42"), ("a=b", "a=b"),
])
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(value, cell):
    assert safe_cell(value) == cell


@pytest.mark.parametrize(("actor", "desk", "changes"), [
    (Actor.staff("hedy@uni.test", role="helpdesk", reason="t1"), True, True),
    (Actor.staff("kate@uni.test", role="auditor", reason="t1"), False, False),  # reads only
    (Actor.cli("root", reason="intake"), False, True),
    (WORKER, False, True),  # a batch's checks and reminders
    (Actor.student("ada@uni.test"), False, False),
    (Actor.visitor("203.0.113.9"), False, False),
])
def test_only_the_helpdesk_role_acts_for_the_desk_and_the_cli_and_worker_change_its_work(actor, desk, changes):
    assert (acts_for_desk(actor), may_change_desk_work(actor)) == (desk, changes)
