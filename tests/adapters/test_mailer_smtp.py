"""The SMTP adapter against a real server (aiosmtpd on loopback): TLS both ways, login, and every failure class."""
from __future__ import annotations

import pytest

from app.adapters.mailer import SmtpMailer
from app.domain.mail import MailConfigError, MailRefused, MailUnavailable, OutgoingMail, new_message_id

SENDER = "portal@uni.test"
LOGIN = ("portal", "Smtp-Password-For-Tests-1")


def mail(to: str = "ada.lovelace@uni.test", n: int = 0) -> OutgoingMail:
    return OutgoingMail(message_id=new_message_id(SENDER), to=to, subject=f"Ihr Konto {n} – geändert",
                        text=f"Hallo Ada,\n.\nline after a lone dot {n}\n", html=f"<p>Hallo Ada {n}</p>")


def mailer_for(server, **overrides) -> SmtpMailer:
    kwargs = {**server.mailer_kwargs(), "sender": SENDER, "reply_to": "desk@uni.test", "timeout_seconds": 5.0}
    kwargs.update(overrides)
    return SmtpMailer(**kwargs)


def test_starttls_with_login_delivers_text_and_html_with_our_headers(smtp_server):
    server = smtp_server("starttls", login=LOGIN)
    sent = mail()
    with mailer_for(server, username=LOGIN[0], password=LOGIN[1]).session() as session:
        session.send(sent)
    (received,) = server.mailbox.wait_for(1)
    assert server.mailbox.logins == ["portal"]
    assert received["Message-ID"] == sent.message_id
    assert received["From"] == SENDER and received["Reply-To"] == "desk@uni.test"
    assert received["X-Envelope-To"] == "ada.lovelace@uni.test"
    assert received["Auto-Submitted"] == "auto-generated"
    assert received["Subject"] == sent.subject  # non-ASCII, encoded on the wire (RFC 2047) and back
    assert received.get_body(("plain",)).get_content().replace("\r\n", "\n") == sent.text  # the lone dot too
    assert "Hallo Ada 0" in received.get_body(("html",)).get_content()


def test_implicit_tls_delivers(smtp_server):
    server = smtp_server("tls")
    with mailer_for(server).session() as session:
        session.send(mail())
    assert len(server.mailbox.wait_for(1)) == 1


def test_one_session_sends_many_messages_over_one_connection(smtp_server):
    server = smtp_server("starttls")
    with mailer_for(server).session() as session:
        for n in range(5):
            session.send(mail(n=n))
    assert len(server.mailbox.wait_for(5)) == 5
    assert server.mailbox.connections == 1


def test_a_certificate_from_an_unknown_ca_is_refused_before_anything_is_sent(smtp_server, tmp_path):
    server = smtp_server("starttls", login=LOGIN)
    other_ca = smtp_server("tls").ca_file  # a real CA file, just not the one that signed this server
    mailer = mailer_for(server, ca_bundle=other_ca, username=LOGIN[0], password=LOGIN[1])
    with pytest.raises(MailConfigError, match="certificate is not trusted"), mailer.session() as session:
        session.send(mail())
    assert server.messages == [] and server.mailbox.logins == []  # the password never left


def test_a_wrong_password_is_a_configuration_error_with_the_code(smtp_server):
    server = smtp_server("starttls", login=LOGIN)
    with pytest.raises(MailConfigError) as refused, mailer_for(
            server, username=LOGIN[0], password="wrong").session() as session:
        session.send(mail())
    assert refused.value.code == 535 and not refused.value.permanent
    assert "wrong" not in str(refused.value) and LOGIN[1] not in repr(mailer_for(server, password=LOGIN[1]))


def test_starttls_is_never_skipped_when_the_server_does_not_offer_it(smtp_server):
    server = smtp_server("none")
    with pytest.raises(MailConfigError, match="STARTTLS"), mailer_for(
            server, security="starttls").session() as session:
        session.send(mail())
    assert server.messages == []


def test_a_refused_recipient_is_permanent_with_its_code(smtp_server):
    server = smtp_server("starttls")
    server.faults.refuse_recipient = "550 5.1.1 user unknown"
    with mailer_for(server).session() as session:
        with pytest.raises(MailRefused) as refused:
            session.send(mail())
        assert refused.value.permanent and refused.value.code == 550 and "user unknown" in str(refused.value)
        server.faults.refuse_recipient = ""
        session.send(mail(n=1))  # the connection was reset, not lost: the next message goes through it
    assert len(server.mailbox.wait_for(1)) == 1 and server.mailbox.connections == 1


def test_a_4xx_after_data_is_transient(smtp_server):
    server = smtp_server("starttls")
    server.faults.defer_data = 1
    with mailer_for(server).session() as session, pytest.raises(MailUnavailable) as deferred:
        session.send(mail())
    assert deferred.value.code == 421 and not deferred.value.permanent
    assert server.messages == []


def test_a_connection_dropped_during_data_is_transient_and_the_session_reconnects(smtp_server):
    server = smtp_server("starttls")
    server.faults.drop_during_data = 1
    with mailer_for(server).session() as session:
        with pytest.raises(MailUnavailable, match="dropped"):
            session.send(mail())
        session.send(mail(n=1))
    assert [m["Subject"] for m in server.mailbox.wait_for(1)] and len(server.messages) == 1
    assert server.mailbox.connections == 2


def test_a_server_that_dropped_an_idle_kept_connection_is_reached_again_without_an_error(smtp_server):
    server = smtp_server("starttls")
    server.faults.accept_then_drop = 1
    with mailer_for(server).session() as session:
        session.send(mail(n=0))  # accepted; then the server hangs up
        session.send(mail(n=1))  # the kept connection is dead: a fresh one, and no error
    assert len(server.mailbox.wait_for(2)) == 2


def test_a_server_that_is_down_is_transient(closed_port):
    mailer = SmtpMailer(host="127.0.0.1", port=closed_port, security="none", sender=SENDER, timeout_seconds=2)
    with pytest.raises(MailUnavailable, match="connection refused"), mailer.session() as session:
        session.send(mail())


def test_plain_smtp_is_refused_for_a_remote_host():
    with pytest.raises(ValueError, match="only to a server on this machine"):
        SmtpMailer(host="mail.uni.test", security="none", sender=SENDER)


def test_the_doctors_probe_logs_in_and_sends_nothing(smtp_server):
    server = smtp_server("tls", login=LOGIN)
    said = mailer_for(server, username=LOGIN[0], password=LOGIN[1]).probe()
    assert said == f"localhost:{server.port} answered: TLS, certificate verified; login accepted"
    assert server.mailbox.logins == ["portal"] and server.messages == []
    with pytest.raises(MailConfigError, match="refused the login"):
        mailer_for(server, username=LOGIN[0], password="wrong").probe()
