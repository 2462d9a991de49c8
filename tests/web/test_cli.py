"""The admin commands: clear messages, exit codes, the same policy as self-service, an audit trail."""
from __future__ import annotations

import getpass
import json

import pytest

from app import cli
from app.domain.actors import Actor
from app.domain.directory import DirectoryUnavailable
from app.domain.grants import GrantError
from app.domain.reference import reference_code
from tests.web.conftest import SEED

HALF = "ada.lovelace@uni.test"


@pytest.fixture
def run(services, settings, monkeypatch, capsys):
    """Run `proofup ...` against the test services; return (exit code, stdout, stderr)."""
    services.close = lambda: None  # the fixture owns them
    monkeypatch.setattr(cli, "_services", lambda _settings, **_options: services)
    monkeypatch.setattr(cli, "load_settings", lambda: settings)

    def go(*argv: str):
        try:
            code = cli.main(list(argv))
        except SystemExit as refused:  # argparse refuses a bad argument before any command runs
            code = refused.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


def test_diagnose_json(run):
    code, out, _ = run("diagnose", HALF, "--json")
    data = json.loads(out)
    assert code == cli.OK
    assert (data["state"], data["reason"], data["can_unlock"]) == ("stuck", "half_registered", True)
    assert data["devices"] == ["Pixel 7"] and data["methods"] == ["password"]
    assert data["reference"] == reference_code(HALF, "test-secret-key-0123456789")  # as the student's page shows


def test_grant_then_release_with_audit(run, services, directory):
    code, out, _ = run("grant", HALF, "--minutes", "15", "--reason", "ticket 4711")
    assert code == cli.OK and "granted" in out
    user = directory.find_user(HALF)
    assert directory.is_member(SEED.bypass_group_dn, user.dn)
    grant = services.store.open_grant_for(HALF)
    assert grant.actor == f"cli:{getpass.getuser()}" and grant.reason == "ticket 4711"
    intent = services.store.audit_events(HALF, action="grant.intent")[0]
    assert (intent.actor_kind, intent.actor, intent.upn, intent.reason) == (
        "cli", f"cli:{getpass.getuser()}", HALF, "ticket 4711")
    assert (grant.expires_at - grant.created_at).total_seconds() == 15 * 60
    code, out, _ = run("release", HALF, "--reason", "done on the phone")
    assert code == cli.OK and not directory.is_member(SEED.bypass_group_dn, user.dn)
    cancelled = services.store.audit_events(HALF, action="grant.cancelled")[0]
    assert (cancelled.actor_kind, cancelled.reason) == ("cli", "done on the phone")
    assert services.store.grants_for(HALF)[0].state == "cancelled"
    code, _, err = run("release", HALF, "--reason", "again")
    assert code == cli.REFUSED and "no open grant" in err


@pytest.mark.parametrize("command", ["grant", "release"])
def test_an_admin_must_give_a_reason_and_a_upn(run, directory, command):
    extra = ["--minutes", "15"] if command == "grant" else []
    code, _, err = run(command, HALF, *extra, "--reason", "  ")
    assert code == cli.REFUSED and "reason" in err
    code, _, err = run(command, "not a upn", *extra, "--reason", "ticket 1")
    assert code == cli.USAGE and "not a user principal name" in err
    assert directory.list_members(SEED.bypass_group_dn) == []


@pytest.mark.parametrize("upn", ["ken.thompson@uni.test", "barbara.liskov@uni.test", "nobody@uni.test"])
def test_grant_obeys_the_policy(run, directory, upn):
    code, _, err = run("grant", upn, "--minutes", "15", "--reason", "asked nicely")
    assert code == cli.REFUSED and "not granted" in err
    assert directory.list_members(SEED.bypass_group_dn) == []


@pytest.mark.parametrize("minutes", ["0", "-5", "4", "241", "999", "1.5", "soon"])
def test_grant_with_an_out_of_policy_length_is_refused(run, services, directory, minutes):
    """`--minutes 0` used to grant the default 30 minutes: now every length meets the one grant-length rule."""
    code, _, err = run("grant", HALF, "--minutes", minutes, "--reason", "long")
    assert code == cli.USAGE and "a grant lasts" in err and "--minutes" in err
    assert directory.list_members(SEED.bypass_group_dn) == []
    assert services.store.grants_for(HALF) == []


def test_the_service_refuses_a_zero_length_instead_of_using_the_default(services, directory):
    with pytest.raises(GrantError, match="a grant lasts"):
        services.onboarding.unlock(HALF, actor=Actor.cli("test", reason="ticket 1"), minutes=0)
    assert directory.list_members(SEED.bypass_group_dn) == []


def test_unavailable_directory_has_its_own_exit_code(run, directory, monkeypatch):
    monkeypatch.setattr(directory, "find_user", lambda _upn: (_ for _ in ()).throw(DirectoryUnavailable("no DC")))
    code, _, err = run("diagnose", HALF)
    assert code == cli.UNAVAILABLE and "no DC" in err


def test_bad_settings_name_the_setting(monkeypatch, capsys):
    monkeypatch.setenv("PROOFUP_SECRET_KEY", "short")
    monkeypatch.setenv("PROOFUP_AUTHORITY", "https://adfs.test/adfs")
    monkeypatch.setenv("PROOFUP_CLIENT_ID", "x")
    assert cli.main(["diagnose", HALF]) == cli.MISCONFIGURED
    assert "PROOFUP_SECRET_KEY" in capsys.readouterr().err


def test_worker_once_releases_a_grant_whose_student_registered(run, services, directory, graph):
    assert run("grant", HALF, "--minutes", "15", "--reason", "ticket 4712")[0] == cli.OK
    graph.register(HALF)
    code, _, err = run("worker", "--once")
    assert code == cli.OK, err
    assert services.store.grants_for(HALF)[0].state == "released"
    assert not directory.is_member(SEED.bypass_group_dn, directory.find_user(HALF).dn)


@pytest.mark.parametrize("command", ["demo", "simulator"])
def test_the_simulator_commands_say_how_to_install_the_demo_extra(command, monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "trustme" else real_find_spec(name, *rest))
    assert cli.main([command]) == cli.MISCONFIGURED
    assert "pip install 'proofup-portal[demo]'" in capsys.readouterr().err


def test_the_demo_flag_without_a_demo_there_says_how_to_start_one(tmp_path, capsys):
    assert cli.main(["diagnose", "--demo", str(tmp_path), HALF]) == cli.MISCONFIGURED
    assert f"proofup demo --state-dir {tmp_path}" in capsys.readouterr().err


def test_invite_mails_a_link_as_the_admin_with_a_reason(run, services, tmp_path):
    from app.domain.invites import InviteFilter, InviteState

    services.invites.settings = type(services.invites.settings)(public_url="http://localhost", mail_enabled=True)
    code, out, _ = run("invite", HALF, "--reason", "ticket 77")
    assert code == cli.OK and "invited" in out
    (invite,) = services.invites.search(InviteFilter(upn=HALF))
    assert invite.created_by == f"cli:{getpass.getuser()}" and invite.reason == "ticket 77"
    assert invite.state(services.invites.clock()) is InviteState.SENT
    code, _, err = run("invite", "nobody.here@uni.test", "--reason", "t")
    assert code == cli.REFUSED and "no such account" in err
    services.invites.settings = type(services.invites.settings)(public_url="http://localhost", mail_enabled=False)
    code, _, err = run("invite", HALF, "--reason", "t")
    assert code == cli.REFUSED and "PROOFUP_SMTP_HOST" in err
