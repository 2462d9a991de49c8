"""No secret reaches a log, the database or the simulator's request log: a student journey; mail with a login.

The portal runs with its real adapters (MSAL, msgraph-sdk) against the in-process simulator, every logger at
DEBUG; afterwards every captured log line, every row of every table and the simulator's request log are
searched for the student's password, both client secrets, the authorization code, any JWT, the PKCE
code_verifier and the Flask secret key.
"""
from __future__ import annotations

import html
import json
import logging
import re

import pytest
from sqlalchemy import MetaData, inspect, select

from app.demo import DemoStack, adfs_form_post
from app.logs import JsonFormatter
from tests.web.conftest import check_until_done, csrf_of

STUDENT = "ada.lovelace@uni.test"
WRONG_PASSWORD = "Wrong-Password-For-The-Log-Test-7"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+")
NAMED_LOGGERS = ("werkzeug", "gunicorn", "gunicorn.error", "gunicorn.access", "msal", "urllib3", "httpx",
                 "httpcore", "kiota_http", "azure", "sqlalchemy", "flask-limiter", "app")


@pytest.fixture
def every_log(caplog):
    """Capture every logger at DEBUG, including any that does not propagate to the root."""
    caplog.set_level(logging.DEBUG)
    existing = [n for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)]
    for name in (*NAMED_LOGGERS, *existing):
        caplog.set_level(logging.DEBUG, logger=name)
    isolated = [lg for lg in map(logging.getLogger, existing) if not lg.propagate]
    for logger in isolated:
        logger.addHandler(caplog.handler)
    yield caplog
    for logger in isolated:
        logger.removeHandler(caplog.handler)


@pytest.fixture
def stack(tmp_path, every_log):
    # The worker runs (it does the methods checks that release the grant) and its logs are searched too.
    stack = DemoStack(tmp_path, method_delay_seconds=0.0, check_interval_seconds=1.0,
                      confirm_interval_seconds=0.5).start()
    yield stack
    stack.stop()


def logged_text(caplog) -> str:
    """Return every captured record: formatted plain and as JSON (PROOFUP_LOG_FORMAT=json), raw message,
    arguments and exception text."""
    parts = [caplog.text]
    as_json = JsonFormatter()
    for record in caplog.records:
        line = as_json.format(record)  # searched as written and decoded: JSON escapes quotes and backslashes
        parts += [str(record.msg), repr(record.args), record.exc_text or "", line,
                  " ".join(map(str, json.loads(line).values()))]
    return "\n".join(parts)


def written_log(caplog, receiving_server: str = "mail.log") -> str:
    """Return every captured record as the portal's handlers write it, plain and JSON (not its raw arguments: a
    link in a request line is scrubbed when the line is written), leaving out the receiving mail server's own
    debug lines (aiosmtpd, the student's side, which holds the mail by definition)."""
    as_json = JsonFormatter()
    records = [r for r in caplog.records if r.name != receiving_server]
    return "\n".join(line for r in records for line in (caplog.handler.format(r), as_json.format(r)))


def pass_shown(page: str) -> str:
    """Return the one-time pass as the page shows it (HTML entities decoded, so it is found as Graph gave it)."""
    return html.unescape(re.search(r'id="tap-code"[^>]*>([^<]+)<', page).group(1).strip())


def database_dump(store) -> str:
    """Return every row of every table of the portal's store."""
    names = inspect(store.engine).get_table_names()
    assert {"grants", "audit_events", "sign_in_flows"} <= set(names)
    metadata = MetaData()
    metadata.reflect(store.engine, only=names)
    with store.engine.connect() as db:
        return "\n".join(f"{table.name}: {tuple(row)!r}" for table in metadata.sorted_tables
                         for row in db.execute(select(table)))


def test_a_whole_journey_leaves_no_secret_in_logs_database_or_simulator(stack, every_log, monkeypatch):
    verifiers: list[str] = []
    identity = stack.services.identity
    begin = identity.begin_sign_in

    def recording_begin(*args, **kwargs):
        auth_uri, flow = begin(*args, **kwargs)
        verifiers.append(flow["code_verifier"])
        return auth_uri, flow

    monkeypatch.setattr(identity, "begin_sign_in", recording_begin)
    client = stack.app.test_client()
    password = stack.seed.user(STUDENT).password
    ca = stack.settings.ca_bundle

    # A mistyped password first, then the real sign-in through the simulated AD FS (form_post back to us).
    refused = adfs_form_post(client.get("/sign-in").headers["Location"], STUDENT, WRONG_PASSWORD, ca)
    assert not refused.action.endswith("/auth/callback")
    posted = adfs_form_post(client.get("/sign-in").headers["Location"], STUDENT, password, ca)
    code = posted.fields["code"]
    page = client.post("/auth/callback", data=posted.fields, follow_redirects=True)
    assert 'data-reason="half_registered"' in page.get_data(as_text=True)

    # Unlock, follow the guide, register in the simulated My Sign-Ins, confirm and release.
    token = csrf_of(page)
    assert client.post("/unlock", data={"csrf_token": token}).headers["Location"].endswith("/guide")
    assert client.get("/guide").status_code == 200
    stack.register_method(STUDENT, "microsoftAuthenticator")
    assert check_until_done(client, token)["phase"] == "done"
    assert 'data-state="completed"' in client.get("/diagnosis").get_data(as_text=True)
    # A replayed callback is refused (and logged) too; then the student signs out.
    replay = stack.app.test_client().post("/auth/callback", data=posted.fields, follow_redirects=True)
    assert replay.status_code == 400
    assert client.post("/sign-out", data={"csrf_token": token}).status_code == 302

    logs = logged_text(every_log)
    database = database_dump(stack.services.store)
    simulator = json.dumps(stack.control("GET", "/requests")["requests"])
    # The search looks where it should: each haystack holds the journey.
    assert "/adfs/oauth2/token" in logs and "/v1.0/$batch" in logs  # werkzeug's and the HTTP clients' lines
    assert STUDENT in database and "grants:" in database and "audit_events:" in database
    assert "/adfs/oauth2/token" in simulator and "/v1.0/$batch" in simulator

    settings = stack.settings
    secrets = {
        "the student's password": password,
        "the mistyped password": WRONG_PASSWORD,
        "the portal's client secret": settings.client_secret,
        "the Graph client secret": settings.graph_client_secret,
        "the authorization code": code,
        "the Flask secret key": settings.secret_key,
        **{f"PKCE code_verifier {n}": v for n, v in enumerate(verifiers)},
    }
    assert len(verifiers) == 2 and all(len(value) >= 8 for value in secrets.values())
    for where, haystack in (("a log", logs), ("the database", database), ("the simulator's request log", simulator)):
        leaked = [what for what, value in secrets.items() if value in haystack]
        assert not leaked, f"{', '.join(leaked)} reached {where}"
        assert not JWT.findall(haystack), f"a token (JWT) reached {where}: {JWT.findall(haystack)[0][:20]}..."



def test_a_temporary_access_pass_reaches_no_log_table_or_simulator_log(tmp_path, every_log):
    """The pass is made, shown once, used at the simulated Entra, confirmed and deleted: found nowhere after."""
    from urllib.parse import urljoin

    from app.adapters.http import make_session
    from app.demo import FormFields

    stack = DemoStack(tmp_path, method_delay_seconds=0.0, check_interval_seconds=1.0, confirm_interval_seconds=0.5,
                      remedy="both").start()
    try:
        client = stack.app.test_client()
        posted = adfs_form_post(client.get("/sign-in").headers["Location"], STUDENT,
                                stack.seed.user(STUDENT).password, stack.settings.ca_bundle)
        page = client.post("/auth/callback", data=posted.fields, follow_redirects=True)
        token = csrf_of(page)
        shown = client.post("/tap", data={"csrf_token": token}).get_data(as_text=True)
        code = pass_shown(shown)
        assert len(code) >= 8 and code not in client.get("/guide").get_data(as_text=True)

        # Sign in to My Sign-Ins with the pass (Entra's form, as a browser posts it), then register.
        browser = make_session(stack.settings.ca_bundle)
        link = re.search(r'id="mysignins" href="([^"]+)"', shown).group(1).replace("&amp;", "&")
        asked = browser.get(link)
        form = FormFields(asked.text)
        assert form.action == "/common/tap", asked.text[:300]
        signed_in = browser.post(urljoin(asked.url, form.action), data={**form.fields, "tap": code})
        assert "addAuthenticator" in signed_in.text
        stack.register_method(STUDENT, "microsoftAuthenticator")
        assert check_until_done(client, token)["phase"] == "done"

        logs = logged_text(every_log)
        database = database_dump(stack.services.store)
        simulator = json.dumps(stack.control("GET", "/requests")["requests"])
        assert "/common/tap" in simulator and "grant.tap_deleted" in database  # the haystacks hold the story
        assert "temporaryAccessPassMethods" in logs
        for where, haystack in (("a log", logs), ("the database", database),
                                ("the simulator's request log", simulator)):
            assert code not in haystack, f"the Temporary Access Pass reached {where}"
    finally:
        stack.stop()


def test_sending_mail_with_a_login_leaves_no_smtp_password_in_logs_or_database(
        tmp_path, every_log, smtp_server, monkeypatch):
    import base64

    from app.adapters.directory_embedded import EmbeddedDirectory
    from app.adapters.mail_templates import MailTemplates
    from app.adapters.mailer import SmtpMailer
    from app.config import load_settings
    from app.seed import load_seed
    from app.wiring import build_outbox, build_store
    from app.services.outbox import OutboxSender

    password, wrong = "Smtp-Secret-For-The-Log-Test-3", "Smtp-Wrong-For-The-Log-Test-4"
    server = smtp_server("starttls", login=("portal", password))
    settings = load_settings({**server.env(), "PROOFUP_SMTP_USERNAME": "portal", "PROOFUP_SMTP_PASSWORD": password,
                              "PROOFUP_SMTP_FROM": "portal@uni.test", "PROOFUP_SECRET_KEY": "0123456789abcdef0123",
                              "PROOFUP_AUTHORITY": "https://adfs.uni.test/adfs", "PROOFUP_CLIENT_ID": "portal",
                              "PROOFUP_DATABASE_URL": f"sqlite:///{tmp_path / 'mail.sqlite3'}"})
    store = build_store(settings)
    outbox = build_outbox(settings, store)
    outbox.queue("security_unlocked", upn=STUDENT, params={"when": "2026-09-01T09:00:00+00:00", "minutes": 30,
                                                          "desk": ""})
    directory = EmbeddedDirectory(load_seed())
    # First with a wrong password (refused, logged, kept), then the right one (sent).
    wrong_mailer = SmtpMailer(**{**server.mailer_kwargs(), "sender": "portal@uni.test", "username": "portal",
                                 "password": wrong})
    assert OutboxSender(outbox, wrong_mailer, MailTemplates(), directory).send_due().retried == 1
    store.clock = lambda: outbox.mails_for(STUDENT)[0].next_attempt_at
    mailer = SmtpMailer.from_settings(settings)
    assert OutboxSender(outbox, mailer, MailTemplates(), directory, clock=store.clock).send_due().sent == 1
    logging.getLogger("app").info("settings: %s; mailer: %r", settings.redacted(), mailer)

    logs, database = logged_text(every_log), database_dump(store)
    assert "535" in logs and "outbox:" in database and "sent" in database  # the haystacks hold the story
    for secret in (password, wrong):
        plain_auth = base64.b64encode(f"\0portal\0{secret}".encode()).decode()
        for form in (secret, plain_auth, base64.b64encode(secret.encode()).decode()):
            assert form not in logs and form not in database
    assert password not in repr(settings) and password not in repr(mailer)
    store.dispose()


def test_an_invite_token_reaches_only_the_students_mail(stack, every_log):
    """The desk invites, the worker mails the link, the student continues and signs in; a forged link is refused.

    The token may be in the mail (that is its purpose) and nowhere else: no log, no table (invites, outbox,
    audit), not the simulator's request log.
    """
    from app.domain.actors import Actor
    from app.wiring import build_mail_sender

    stack.services.invites.invite(STUDENT, Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="t-1"))
    assert build_mail_sender(stack.services).send_due().sent == 1
    (mail,) = stack.mailbox.wait_for(1)
    link = re.search(r"\S+/invite/(\S+)", mail.get_body(("plain",)).get_content())
    token = link.group(1)
    client = stack.app.test_client()
    page = client.get(f"/invite/{token}")
    assert page.status_code == 200
    answer = client.post(f"/invite/{token}", data={"csrf_token": csrf_of(page)})
    assert "login_hint=" in answer.headers["Location"]
    posted = adfs_form_post(answer.headers["Location"], STUDENT, stack.seed.user(STUDENT).password,
                            stack.settings.ca_bundle)
    landed = client.post("/auth/callback", data=posted.fields, follow_redirects=True)
    assert 'data-reason="half_registered"' in landed.get_data(as_text=True)
    assert client.get(f"/invite/{token}").status_code == 404  # used: refused and audited
    # What an access log writes for these requests (gunicorn's line holds the request line and the referrer).
    logging.getLogger("gunicorn.access").info('127.0.0.1 - - "POST /invite/%s HTTP/1.1" 302 "%s/invite/%s"',
                                              token, stack.settings.public_url, token)

    logs = written_log(every_log)
    database = database_dump(stack.services.store)
    simulator = json.dumps(stack.control("GET", "/requests")["requests"])
    assert "/invite/(token)" in logs and "invites:" in database and "outbox:" in database and "/adfs/oauth2/token" in simulator
    assert "invite.used" in database and "invite.refused" in database
    for where, haystack in (("a log", logs), ("the database", database), ("the simulator's request log", simulator)):
        assert token not in haystack, f"the invite token reached {where}"


def test_a_kiosk_credential_reaches_no_log_table_or_simulator(stack, every_log):
    from app.domain.actors import Actor
    from app.web.kiosk import KIOSK_COOKIE
    from tests.fixtures.simulator import https_session

    desk = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="orientation week")
    kiosk, credential = stack.services.kiosks.enrol(desk, "Library 3", client="127.0.0.1")
    client = stack.app.test_client()
    client.set_cookie(KIOSK_COOKIE, credential, domain=stack.host)  # the test client asks for the public URL's host
    assert client.get("/kiosk/").status_code == 200
    posted = adfs_form_post(client.get("/kiosk/start").headers["Location"], STUDENT,
                            stack.seed.user(STUDENT).password, stack.settings.ca_bundle)
    page = client.post("/auth/callback", data=posted.fields, follow_redirects=True)
    assert 'id="kiosk-done"' in page.get_data(as_text=True)
    logout = client.post("/kiosk/done", data={"csrf_token": csrf_of(page)}).headers["Location"]
    https_session(stack.settings.ca_bundle).get(logout, allow_redirects=False, timeout=10)

    logs = logged_text(every_log)
    database = database_dump(stack.services.store)
    simulator = json.dumps(stack.control("GET", "/requests")["requests"])
    assert "kiosks:" in database and "Library 3" in database and "/adfs/oauth2/logout" in simulator
    for where, haystack in (("a log", logs), ("the database", database), ("the simulator's request log", simulator)):
        assert credential not in haystack, f"the kiosk credential reached {where}"


def test_a_pass_the_desk_issues_reaches_no_log_table_or_simulator_log(tmp_path, every_log):
    """The desk issues a pass for a student at the counter (shown once, to the desk), then releases it."""
    from tests.web.test_tap_desk import desk_client

    upn = "alan.turing@uni.test"
    stack = DemoStack(tmp_path, worker=False, method_delay_seconds=0.0, remedy="both").start()
    try:
        client, token, _ = desk_client(stack)
        shown = client.post(f"/helpdesk/student/{upn}/tap", data={
            "csrf_token": token, "reason": "INC-4711 at the counter", "seen_grant": "0"}).get_data(as_text=True)
        code = pass_shown(shown)
        grant = stack.services.store.open_grant_for(upn)
        client.post(f"/helpdesk/student/{upn}/release", data={"csrf_token": token, "reason": "INC-4711 done",
                                                               "seen_grant": str(grant.id)})
        logs = logged_text(every_log)
        database = database_dump(stack.services.store)
        simulator = json.dumps(stack.control("GET", "/requests")["requests"])
        assert len(code) >= 8 and "helpdesk.tap" in database and "temporaryAccessPassMethods" in simulator
        for where, haystack in (("a log", logs), ("the database", database),
                                ("the simulator's request log", simulator)):
            assert code not in haystack, f"the desk's Temporary Access Pass reached {where}"
    finally:
        stack.stop()
