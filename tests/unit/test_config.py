"""Settings: read from PROOFUP_* variables, validated at start-up, every failure names its setting."""
from __future__ import annotations

import pytest

from app.config import SettingsError, load_settings

BASE = {
    "PROOFUP_SECRET_KEY": "0123456789abcdef0123",
    "PROOFUP_AUTHORITY": "https://adfs.uni.test/adfs",
    "PROOFUP_CLIENT_ID": "proofup-portal",
}
LDAP = {
    "PROOFUP_LDAP_URL": "ldaps://dc1.uni.test ldaps://dc2.uni.test",
    "PROOFUP_LDAP_BIND_DN": "CN=svc-proofup,OU=Service Accounts,DC=uni,DC=test",
    "PROOFUP_LDAP_PASSWORD": "not-a-real-one",
    "PROOFUP_LDAP_BASE_DN": "DC=uni,DC=test",
    "PROOFUP_REQUIRED_GROUP_DN": "CN=MFA_Required,OU=Groups,DC=uni,DC=test",
    "PROOFUP_BYPASS_GROUP_DN": "CN=MFA_ProofUpBypass,OU=Groups,DC=uni,DC=test",
}


def test_minimal_settings_load_with_documented_defaults():
    settings = load_settings(BASE)
    assert settings.authority_is_adfs
    assert settings.grant_minutes == 30
    assert (settings.worker_interval_seconds, settings.confirm_interval_seconds) == (30.0, 5.0)
    assert settings.mysignins_url == "https://mysignins.microsoft.com/security-info"
    assert (settings.session_minutes, settings.session_max_minutes, settings.max_unlocks) == (20, 60, 3)


TENANT = "8d3f2b4e-6c1a-4f5e-9b7d-2a1c0e9f8b7a"


def test_entra_authority_is_not_adfs():
    settings = load_settings({**BASE, "PROOFUP_AUTHORITY": f"https://login.microsoftonline.com/{TENANT}"})
    assert not settings.authority_is_adfs


@pytest.mark.parametrize("tenant", ["common", "organizations", "consumers", "Common"])
def test_a_shared_entra_authority_is_refused_at_start_up(tenant):
    with pytest.raises(SettingsError, match=f"PROOFUP_AUTHORITY must name your tenant.*not /{tenant.lower()}"):
        load_settings({**BASE, "PROOFUP_AUTHORITY": f"https://login.microsoftonline.com/{tenant}/v2.0",
                       "PROOFUP_TENANT_ID": TENANT})


@pytest.mark.parametrize("authority, tenant_id, error", [
    ("https://login.microsoftonline.com/uni.onmicrosoft.com", "", "PROOFUP_TENANT_ID is required"),
    ("https://login.microsoftonline.com/uni.onmicrosoft.com", "uni.onmicrosoft.com", "must be the tenant's id"),
    (f"https://login.microsoftonline.com/{TENANT}", "00000000-0000-0000-0000-000000000000", "names tenant"),
])
def test_an_entra_authority_must_pin_one_tenant(authority, tenant_id, error):
    with pytest.raises(SettingsError, match=error):
        load_settings({**BASE, "PROOFUP_AUTHORITY": authority, "PROOFUP_TENANT_ID": tenant_id})


def test_an_entra_authority_named_by_domain_is_pinned_by_tenant_id():
    from app.config import authority_tenant

    settings = load_settings({**BASE, "PROOFUP_AUTHORITY": "https://login.microsoftonline.com/uni.onmicrosoft.com",
                              "PROOFUP_TENANT_ID": TENANT.upper()})
    assert authority_tenant(settings.authority, settings.tenant_id) == TENANT
    # AD FS needs no tenant; a domain in PROOFUP_TENANT_ID is fine there (only the My Sign-Ins link uses it).
    assert load_settings({**BASE, "PROOFUP_TENANT_ID": "uni.onmicrosoft.com"}).tenant_id == "uni.onmicrosoft.com"


@pytest.mark.parametrize("name", ["PROOFUP_SECRET_KEY", "PROOFUP_AUTHORITY", "PROOFUP_CLIENT_ID"])
def test_a_missing_required_setting_is_named(name):
    env = {k: v for k, v in BASE.items() if k != name}
    with pytest.raises(SettingsError, match=name):
        load_settings(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROOFUP_SECRET_KEY", "short"),
        ("PROOFUP_AUTHORITY", "http://adfs.uni.test/adfs"),
        ("PROOFUP_AUTHORITY", "https://login.microsoftonline.com"),
        ("PROOFUP_GRAPH_URL", "http://graph.test/v1.0"),
        ("PROOFUP_MYSIGNINS_URL", "ftp://x"),
        ("PROOFUP_GRANT_MINUTES", "3"),
        ("PROOFUP_GRANT_MINUTES", "thirty"),
        ("PROOFUP_CHECK_INTERVAL_SECONDS", "soon"),
        ("PROOFUP_LDAP_USE_TTL", "maybe"),
        ("PROOFUP_CA_BUNDLE", "/nonexistent/ca.pem"),
        ("PROOFUP_LDAP_URL", "http://dc1.uni.test"),
        ("PROOFUP_TIMEZONE", "Mars/Olympus_Mons"),
        ("PROOFUP_PROXY_HOPS", "9"),
        ("PROOFUP_CONFIRM_INTERVAL_SECONDS", "0"),
        ("PROOFUP_CONFIRM_INTERVAL_SECONDS", "often"),
        ("PROOFUP_WORKER_INTERVAL_SECONDS", "-30"),
        ("PROOFUP_SESSION_MINUTES", "0"),
        ("PROOFUP_SESSION_MAX_MINUTES", "10"),  # shorter than the idle limit (20)
        ("PROOFUP_SESSION_MAX_MINUTES", "2000"),
        ("PROOFUP_SESSION_MAX_MINUTES", "an hour"),
        ("PROOFUP_MAX_UNLOCKS", "0"),
        ("PROOFUP_MAX_UNLOCKS", "three"),
        ("PROOFUP_GRANT_MINUTES", "0"),
        ("PROOFUP_GRANT_MINUTES", "241"),
        ("PROOFUP_WORKER_INTERVAL_SECONDS", "inf"),
        ("PROOFUP_CHECK_INTERVAL_SECONDS", "nan"),
        ("PROOFUP_CHECK_INTERVAL_SECONDS", "0"),
        ("PROOFUP_REPLICATION_WAIT_SECONDS", "-1"),
        ("PROOFUP_DESK_URL", "http://servicedesk.uni.test"),
        ("PROOFUP_DESK_PHONE", "call us"),
        ("PROOFUP_DESK_PHONE", "+49 30 1234 5678; DROP"),
        ("PROOFUP_UNIVERSITY_NAME", "x" * 121),
        ("PROOFUP_DESK_HOURS", "Mon-Fri\n8-18"),
        ("PROOFUP_LOGO_FILE", "/nonexistent/logo.svg"),
        ("PROOFUP_LOGO_FILE", "/etc/hostname"),
    ],
)
def test_a_malformed_setting_is_named(name, value):
    env = {**BASE, **LDAP, name: value}
    with pytest.raises(SettingsError, match=name):
        load_settings(env)


@pytest.mark.parametrize("name", [k for k in LDAP if k != "PROOFUP_LDAP_URL"])
def test_ldap_needs_its_companions(name):
    env = {**BASE, **{k: v for k, v in LDAP.items() if k != name}}
    with pytest.raises(SettingsError, match=name):
        load_settings(env)


def test_lists_and_flags_are_parsed():
    env = {**BASE, **LDAP, "PROOFUP_PRIVILEGED_GROUP_DNS": "CN=A,DC=x; CN=B,DC=x", "PROOFUP_LDAP_USE_TTL": "yes"}
    settings = load_settings(env)
    assert settings.ldap_urls == ("ldaps://dc1.uni.test", "ldaps://dc2.uni.test")
    assert settings.privileged_group_dns == ("CN=A,DC=x", "CN=B,DC=x")
    assert settings.ldap_use_ttl is True


def test_redacted_settings_hide_every_secret():
    env = {**BASE, **LDAP, "PROOFUP_CLIENT_SECRET": "s3cret-client", "PROOFUP_GRAPH_CLIENT_SECRET": "s3cret-graph"}
    shown = repr(load_settings(env).redacted())
    for secret in ("s3cret-client", "s3cret-graph", LDAP["PROOFUP_LDAP_PASSWORD"], BASE["PROOFUP_SECRET_KEY"]):
        assert secret not in shown


def test_the_app_refuses_to_start_with_a_bad_setting(monkeypatch):
    from app import create_app

    for name in list(BASE) + list(LDAP):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROOFUP_SECRET_KEY", "0123456789abcdef0123")
    monkeypatch.setenv("PROOFUP_CLIENT_ID", "proofup-portal")
    monkeypatch.setenv("PROOFUP_AUTHORITY", "http://insecure.test/adfs")
    with pytest.raises(SettingsError, match="PROOFUP_AUTHORITY"):
        create_app()
    monkeypatch.setenv("PROOFUP_AUTHORITY", "https://adfs.uni.test/adfs")
    monkeypatch.delenv("PROOFUP_PUBLIC_URL", raising=False)
    with pytest.raises(SettingsError, match="PROOFUP_PUBLIC_URL is required"):
        create_app()


@pytest.mark.parametrize("value", ["https://proofup.uni.example", "https://proofup.uni.example:8443/portal/",
                                   "http://127.0.0.1:8000", "http://localhost", "http://[::1]:8000"])
def test_a_public_url_is_accepted(value):
    assert load_settings({**BASE, "PROOFUP_PUBLIC_URL": value}).public_url == value


@pytest.mark.parametrize("value", ["http://proofup.uni.example", "proofup.uni.example", "ftp://proofup.uni.example",
                                   "https://proofup.uni.example/?x=1", "https://proofup.uni.example/#top",
                                   "https://user:pw@proofup.uni.example", "https://proofup.uni.example:99999",
                                   "https:///path"])
def test_a_bad_public_url_is_refused(value):
    with pytest.raises(SettingsError, match="PROOFUP_PUBLIC_URL"):
        load_settings({**BASE, "PROOFUP_PUBLIC_URL": value})


SMTP = {
    "PROOFUP_SMTP_HOST": "mail.uni.test",
    "PROOFUP_SMTP_FROM": "proofup@uni.test",
    "PROOFUP_SMTP_USERNAME": "proofup",
    "PROOFUP_SMTP_PASSWORD": "smtp-not-a-real-one",
}


def test_mail_settings_are_typed_with_safe_defaults():
    settings = load_settings({**BASE, **SMTP, "PROOFUP_SMTP_PORT": "2525", "PROOFUP_SMTP_TIMEOUT_SECONDS": "7.5"})
    assert (settings.smtp_security, settings.smtp_port, settings.smtp_timeout_seconds) == ("starttls", 2525, 7.5)
    assert settings.mail_language == "en"
    assert load_settings(BASE).smtp_host == ""  # no host: no mail, and nothing else is asked for


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROOFUP_SMTP_SECURITY", "ssl"),
        ("PROOFUP_SMTP_SECURITY", "none"),  # a remote host without TLS
        ("PROOFUP_SMTP_PORT", "70000"),
        ("PROOFUP_SMTP_PORT", "smtp"),
        ("PROOFUP_SMTP_FROM", ""),
        ("PROOFUP_SMTP_FROM", "ProofUp <proofup@uni.test>"),
        ("PROOFUP_SMTP_FROM", "proofup@uni.test\nBcc: all@uni.test"),
        ("PROOFUP_SMTP_REPLY_TO", "desk@"),
        ("PROOFUP_SMTP_PASSWORD", ""),  # a user name without its password
        ("PROOFUP_SMTP_TIMEOUT_SECONDS", "0"),
        ("PROOFUP_MAIL_LANGUAGE", "fr"),
        ("PROOFUP_MAIL_LANGUAGE", "../de"),
    ],
)
def test_a_malformed_mail_setting_is_named(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({**BASE, **SMTP, name: value})


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "[::1]", "127.0.0.53"])
def test_plain_smtp_is_allowed_to_this_machine_only_and_never_with_a_password(host):
    plain = {**BASE, "PROOFUP_SMTP_HOST": host, "PROOFUP_SMTP_FROM": "proofup@uni.test",
             "PROOFUP_SMTP_SECURITY": "none"}
    assert load_settings(plain).smtp_security == "none"
    with pytest.raises(SettingsError, match="PROOFUP_SMTP_USERNAME needs TLS"):
        load_settings({**plain, "PROOFUP_SMTP_USERNAME": "u", "PROOFUP_SMTP_PASSWORD": "p"})


def test_the_smtp_password_is_redacted():
    settings = load_settings({**BASE, **SMTP})
    assert SMTP["PROOFUP_SMTP_PASSWORD"] not in repr(settings.redacted())
    assert SMTP["PROOFUP_SMTP_PASSWORD"] not in repr(settings)


def test_an_env_file_round_trips_every_kind_of_setting(tmp_path):
    from app.config import env_file_text

    directory = tmp_path / "directory.json"
    directory.write_text("{}", encoding="utf-8")
    settings = load_settings({**BASE, "PROOFUP_PRIVILEGED_GROUP_DNS": "CN=Domain Admins,CN=Users,DC=uni,DC=test;CN=x",
                              "PROOFUP_LDAP_USE_TTL": "true", "PROOFUP_GRANT_MINUTES": "45",
                              "PROOFUP_CHECK_INTERVAL_SECONDS": "2.5", "PROOFUP_DEMO_DIRECTORY": str(directory),
                              "PROOFUP_RATE_LIMIT_UNLOCK": "5/hour;20/day", "PROOFUP_CLIENT_SECRET": "it's \"odd\" $x"})
    env_file = tmp_path / "demo.env"
    env_file.write_text("# a comment\n\n" + env_file_text(settings), encoding="utf-8")
    assert load_settings({"PROOFUP_ENV_FILE": str(env_file)}) == settings
    assert "PROOFUP_GRANT_MINUTES=45" in env_file.read_text() and "PROOFUP_TIMEZONE" not in env_file.read_text()


def test_the_environment_wins_over_the_env_file(tmp_path):
    env_file = tmp_path / "portal.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in BASE.items()) + "PROOFUP_GRANT_MINUTES=45\n")
    settings = load_settings({"PROOFUP_ENV_FILE": str(env_file), "PROOFUP_GRANT_MINUTES": "20"})
    assert (settings.grant_minutes, settings.client_id) == (20, "proofup-portal")


@pytest.mark.parametrize("content, named", [
    (None, "PROOFUP_ENV_FILE names no readable file"),
    ("PROOFUP_GRANT_MINUTES 45\n", "line 1: expected NAME=value"),
    ("# ok\nPROOFUP_CLIENT_ID='unclosed\n", "line 2: expected NAME=value"),
    ("PROOFUP_CLIENT_ID=two words\n", "line 1: expected NAME=value"),
])
def test_a_broken_env_file_is_named(tmp_path, content, named):
    env_file = tmp_path / "portal.env"
    if content is not None:
        env_file.write_text(content, encoding="utf-8")
    with pytest.raises(SettingsError, match=named):
        load_settings({**BASE, "PROOFUP_ENV_FILE": str(env_file)})


def test_the_demo_directory_must_exist_and_excludes_ldap(tmp_path):
    with pytest.raises(SettingsError, match="PROOFUP_DEMO_DIRECTORY names no file.*is the demo running"):
        load_settings({**BASE, "PROOFUP_DEMO_DIRECTORY": str(tmp_path / "gone.json")})
    (tmp_path / "directory.json").write_text("{}")
    with pytest.raises(SettingsError, match="PROOFUP_LDAP_URL or PROOFUP_DEMO_DIRECTORY, not both"):
        load_settings({**BASE, **LDAP, "PROOFUP_DEMO_DIRECTORY": str(tmp_path / "directory.json")})
def test_branding_and_desk_contact_are_read(tmp_path):
    logo = tmp_path / "logo.svg"
    logo.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>", encoding="utf-8")
    settings = load_settings({**BASE, "PROOFUP_UNIVERSITY_NAME": "University of Test", "PROOFUP_LOGO_FILE": str(logo),
                              "PROOFUP_DESK_TEXT": "IT Service Desk, Library", "PROOFUP_DESK_PHONE": "+49 (30) 1234-5678",
                              "PROOFUP_DESK_URL": "https://servicedesk.uni.test", "PROOFUP_DESK_HOURS": "Mon-Fri 8-18"})
    assert (settings.university_name, settings.desk_phone) == ("University of Test", "+49 (30) 1234-5678")
    assert settings.logo_file == str(logo)


def test_a_logo_larger_than_the_limit_is_refused(tmp_path):
    logo = tmp_path / "huge.png"
    logo.write_bytes(b"\x89PNG" + b"\0" * 600_000)
    with pytest.raises(SettingsError, match="PROOFUP_LOGO_FILE"):
        load_settings({**BASE, "PROOFUP_LOGO_FILE": str(logo)})


def test_batch_reminder_days_are_read_and_checked():
    base = {"PROOFUP_SECRET_KEY": "x" * 20, "PROOFUP_AUTHORITY": "https://idp.test/adfs", "PROOFUP_CLIENT_ID": "p"}
    assert load_settings(base).reminder_days == (2, 5)
    assert load_settings({**base, "PROOFUP_BATCH_REMINDER_DAYS": "1; 3;7"}).reminder_days == (1, 3, 7)
    for bad in ("5;2", "two", "0", "2;2", "-1"):
        with pytest.raises(SettingsError, match="PROOFUP_BATCH_REMINDER_DAYS"):
            load_settings({**base, "PROOFUP_BATCH_REMINDER_DAYS": bad})
