"""`proofup doctor` against Samba and the simulator: every check, the exit codes the README names, no side effect."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from app import cli
from app.adapters.store import Store
from app.demo import DemoStack
from app.simulator.clients import LIMITED_CLIENT_ID, read_client_secrets
from tests.fixtures.samba import ca_bundle

pytestmark = pytest.mark.samba


@pytest.fixture(scope="module")
def simulator_stack(tmp_path_factory):
    stack = DemoStack(tmp_path_factory.mktemp("doctor"), worker=False).start()
    yield stack
    stack.stop()


@pytest.fixture
def doctor(simulator_stack, samba_dc, tmp_path, monkeypatch, capsys):
    """Run `proofup doctor` with the demo's settings (simulated cloud) pointed at Samba, changed as asked."""
    env = samba_dc.env()
    both = tmp_path / "ca.pem"
    ca_bundle(both, samba_dc)
    both.write_bytes(both.read_bytes() + Path(simulator_stack.settings.ca_bundle).read_bytes())
    base = replace(simulator_stack.settings, ldap_url=env["PROOFUP_LDAP_URL"], ldap_bind_dn=env["PROOFUP_LDAP_BIND_DN"],
                   ldap_password=env["PROOFUP_LDAP_PASSWORD"], ldap_base_dn=env["PROOFUP_LDAP_BASE_DN"],
                   ca_bundle=str(both), database_url=f"sqlite:///{tmp_path}/doctor.sqlite3", demo_directory="")
    monkeypatch.chdir(tmp_path)

    def run(**changes):
        settings = replace(base, **changes)
        monkeypatch.setattr(cli, "load_settings", lambda: settings)
        code = cli.main(["doctor"])
        out = capsys.readouterr().out
        return code, {line[5:15].strip(): line for line in out.splitlines() if line[:4] in ("ok  ", "warn", "FAIL")}, out

    run.settings = base
    return run


def test_doctor_passes_and_changes_nothing(doctor, tmp_path):
    code, lines, out = doctor(database_url="sqlite:///instance/proofup.sqlite3")  # the default, relative
    assert code == cli.OK, out
    assert set(lines) == {"settings", "database", "sign-in", "graph", "directory", "ttl", "tap", "mail"}
    assert "FAIL" not in out
    assert "no database yet" in lines["database"]
    assert "signing key(s)" in lines["sign-in"] and "UserAuthenticationMethod.ReadWrite.All" in lines["graph"]
    assert "may write the bypass group's member and nothing else" in lines["directory"]
    assert "off (the forest lacks Privileged Access Management)" in lines["ttl"]
    assert "answered: plain SMTP on this machine" in lines["mail"]  # the demo's mailbox
    assert "policy enabled for all users; lifetime 60 to 480 min" in lines["tap"] and "offered: no" in lines["tap"]
    assert not (tmp_path / "instance").exists()  # it used to create instance/proofup.sqlite3 here
    secrets = (doctor.settings.ldap_password, doctor.settings.graph_client_secret, doctor.settings.client_secret,
               doctor.settings.secret_key)
    assert not any(secret in out for secret in secrets)


def test_doctor_reads_the_schema_version_without_upgrading(doctor, tmp_path):
    url = doctor.settings.database_url
    store = Store(url)
    store.upgrade()
    store.dispose()
    code, lines, _ = doctor()
    assert code == cli.OK and "schema up to date" in lines["database"]
    with store.engine.begin() as db:
        db.exec_driver_sql("UPDATE alembic_version SET version_num = 'from_the_future'")
    before = Path(url.split("///")[1]).read_bytes()
    code, lines, _ = doctor()
    assert code == cli.UNAVAILABLE and "newer than this version" in lines["database"]
    assert Path(url.split("///")[1]).read_bytes() == before


def test_doctor_names_what_does_not_answer_with_exit_3(doctor):
    code, lines, out = doctor(ldap_password="wrong-password", graph_client_secret="wrong-secret")
    assert code == cli.UNAVAILABLE, out
    assert lines["directory"].startswith("FAIL") and lines["graph"].startswith("FAIL")
    assert lines["database"].startswith("ok") and lines["sign-in"].startswith("ok")
    assert "wrong-password" not in out and "wrong-secret" not in out


def test_doctor_exits_4_for_a_missing_setting_as_the_readme_says(doctor):
    code, lines, out = doctor(ldap_url="")
    assert code == cli.MISCONFIGURED, out
    assert lines["directory"].startswith("FAIL") and "PROOFUP_LDAP_URL" in lines["directory"]


def test_doctor_on_the_demo_directory_checks_no_ldap(doctor, simulator_stack):
    demo_file = simulator_stack.settings.demo_directory
    assert demo_file, "the simulator stack runs on the demo's directory file"
    code, lines, out = doctor(ldap_url="", demo_directory=demo_file)
    assert code == cli.OK, out
    assert "demo's directory file" in lines["directory"] and lines["ttl"].startswith("ok")


def test_doctor_names_graph_permissions_the_tenant_did_not_grant(doctor, simulator_stack):
    secret = read_client_secrets(simulator_stack.state_dir / "simulator")[LIMITED_CLIENT_ID]
    code, lines, out = doctor(graph_client_id=LIMITED_CLIENT_ID, graph_client_secret=secret)
    assert code == cli.UNAVAILABLE, out
    assert "UserAuthenticationMethod.Read.All" in lines["graph"] and lines["graph"].startswith("FAIL")


def test_doctor_refuses_a_service_account_that_may_do_more(doctor, samba_dc):
    code, lines, out = doctor(ldap_bind_dn=samba_dc.admin_dn, ldap_password=samba_dc.admin_password)
    assert code == cli.UNAVAILABLE, out
    assert "may write more than member" in lines["directory"]


def test_doctor_says_the_forest_cannot_do_ttl(doctor):
    code, lines, out = doctor(ldap_use_ttl=True)
    assert code == cli.MISCONFIGURED, out
    assert "PROOFUP_LDAP_USE_TTL" in lines["ttl"] and "Privileged Access Management" in lines["ttl"]


def test_doctor_names_a_sign_in_authority_that_does_not_answer(doctor):
    code, lines, out = doctor(authority="https://127.0.0.1:9/adfs")
    assert code == cli.UNAVAILABLE and lines["sign-in"].startswith("FAIL"), out


def test_doctor_checks_redis_when_configured(doctor):
    code, lines, out = doctor(redis_url="redis://127.0.0.1:9/0")
    assert code == cli.UNAVAILABLE and lines["redis"].startswith("FAIL"), out


def test_doctor_logs_in_to_the_mail_server_and_blames_the_setting_when_refused(doctor, smtp_server):
    server = smtp_server("starttls", login=("portal", "Smtp-Doctor-Password-5"))
    mail = dict(smtp_host="localhost", smtp_port=server.port, smtp_security="starttls", smtp_username="portal",
                ca_bundle=server.ca_file)
    code, lines, out = doctor(**mail, smtp_password="Smtp-Doctor-Password-5")
    assert "STARTTLS, certificate verified; login accepted" in lines["mail"], out
    assert "Smtp-Doctor-Password-5" not in out and server.messages == []
    code, lines, out = doctor(**mail, smtp_password="wrong")
    assert code == cli.MISCONFIGURED and lines["mail"].startswith("FAIL") and "refused the login" in lines["mail"]


def test_doctor_reads_the_tap_policy_and_warns_where_ad_fs_would_still_be_asked(doctor, simulator_stack):
    simulator_stack.control("POST", "/federation", {"federatedIdpMfaBehavior": "enforceMfaByFederatedIdp"})
    try:
        code, lines, out = doctor(remedy="both")
        assert code == cli.OK, out
        assert lines["tap"].startswith("warn") and "offered: yes" in lines["tap"]
        assert "uni.test has federatedIdpMfaBehavior=enforceMfaByFederatedIdp" in lines["tap"]
    finally:
        simulator_stack.control("POST", "/federation", {"federatedIdpMfaBehavior": "acceptIfMfaDoneByFederatedIdp"})
    simulator_stack.control("POST", "/tap-policy", {"state": "disabled"})
    try:
        code, lines, out = doctor(remedy="tap")
        assert code == cli.MISCONFIGURED and lines["tap"].startswith("FAIL") and "disabled" in lines["tap"], out
    finally:
        simulator_stack.control("POST", "/tap-policy", {"state": "enabled"})
    secret = read_client_secrets(simulator_stack.state_dir / "simulator")[LIMITED_CLIENT_ID]
    code, lines, out = doctor(graph_client_id=LIMITED_CLIENT_ID, graph_client_secret=secret, remedy="tap")
    assert "Policy.Read.AuthenticationMethod" in lines["tap"] and lines["tap"].startswith("FAIL"), out
