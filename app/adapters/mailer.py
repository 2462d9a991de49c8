"""SMTP (smtplib): STARTTLS or implicit TLS with a verified certificate, optional login, one connection per batch.

Every failure becomes a MailError the outbox understands: MailRefused (a 5xx for the recipient or the message:
never retried), MailUnavailable (4xx, refused or dropped connection, timeout: retried) or MailConfigError (our
own settings: login refused, certificate not trusted, no STARTTLS: retried, so the queue goes out once fixed).
"""
from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from contextlib import contextmanager
from email import charset as _charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formatdate
from typing import Iterator

from app.config import SMTP_SECURITY_MODES, is_loopback
from app.domain.mail import MailConfigError, MailError, MailRefused, MailUnavailable, OutgoingMail

log = logging.getLogger(__name__)
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
SERVICE_CLOSING = 421  # the server says it closes the connection now
_UTF8_QP = _charset.Charset("utf-8")
_UTF8_QP.body_encoding = _charset.QP  # readable in any mail source view, 7-bit safe
_WIRE = compat32.clone(linesep="\r\n")


class SmtpMailer:
    """The portal's mail server, as configured by PROOFUP_SMTP_*."""

    def __init__(self, *, host: str, sender: str, port: int = 0, security: str = "starttls", username: str = "",
                 password: str = "", reply_to: str = "", ca_bundle: str = "", timeout_seconds: float = 30.0):
        if security not in SMTP_SECURITY_MODES:
            raise ValueError(f"SMTP security must be one of {SMTP_SECURITY_MODES}, not {security!r}")
        if security == "none" and not is_loopback(host):
            raise ValueError("plain SMTP (no TLS) is allowed only to a server on this machine")
        self.host = host
        self.port = port or DEFAULT_PORTS[security]
        self.security = security
        self.sender = sender
        self.reply_to = reply_to
        self.username = username
        self._password = password
        self.ca_bundle = ca_bundle
        self.timeout_seconds = timeout_seconds

    def __repr__(self) -> str:  # never show the password
        return f"SmtpMailer({self.security}://{self.host}:{self.port}, sender={self.sender!r})"

    @classmethod
    def from_settings(cls, settings) -> "SmtpMailer":
        """Build the mailer from validated Settings."""
        return cls(host=settings.smtp_host, port=settings.smtp_port, security=settings.smtp_security,
                   username=settings.smtp_username, password=settings.smtp_password, sender=settings.smtp_from,
                   reply_to=settings.smtp_reply_to, ca_bundle=settings.ca_bundle,
                   timeout_seconds=settings.smtp_timeout_seconds)

    @contextmanager
    def session(self) -> Iterator["SmtpSession"]:
        """Yield a session that connects on its first message and says QUIT at the end."""
        session = SmtpSession(self)
        try:
            yield session
        finally:
            session.close()

    def tls_context(self) -> ssl.SSLContext:
        """Return a client context that verifies the server's certificate and name (CA bundle or system store)."""
        return ssl.create_default_context(cafile=self.ca_bundle or None)

    def connect(self) -> smtplib.SMTP:
        """Open, secure and log in one connection; raise MailError saying what went wrong."""
        where = f"{self.host}:{self.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if self.security == "tls":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_seconds,
                                        context=self.tls_context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds)
            smtp.ehlo()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise MailConfigError(f"{where} does not offer STARTTLS; the portal never sends without TLS")
                smtp.starttls(context=self.tls_context())
                smtp.ehlo()
            if self.username:
                self._login(smtp)
            return smtp
        except MailError:
            _close_quietly(smtp)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _close_quietly(smtp)
            raise MailConfigError(f"{where} refused the login of {self.username!r} ({exc.smtp_code})",
                                  code=exc.smtp_code) from None
        except ssl.SSLCertVerificationError as exc:
            _close_quietly(smtp)
            raise MailConfigError(f"{where}: the server's certificate is not trusted ({exc.verify_message}); "
                                  "set PROOFUP_CA_BUNDLE to its CA") from None
        except smtplib.SMTPNotSupportedError as exc:
            _close_quietly(smtp)
            raise MailConfigError(f"{where}: {exc}") from None
        except smtplib.SMTPResponseException as exc:  # the greeting, EHLO or STARTTLS answered with an error
            _close_quietly(smtp)
            raise MailUnavailable(f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}",
                                  code=exc.smtp_code) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, unreachable, timeout, TLS handshake, dropped
            _close_quietly(smtp)
            raise MailUnavailable(f"cannot reach the mail server {where}: {_describe(exc)}") from None

    def probe(self) -> str:
        """Connect, secure and log in as for a message, send nothing, say QUIT; return what was checked."""
        session = SmtpSession(self)
        session._open()  # noqa: SLF001 - the session's own connection, closed below
        session.close()
        checked = {"starttls": "STARTTLS, certificate verified", "tls": "TLS, certificate verified",
                   "none": "plain SMTP on this machine"}[self.security]
        return f"{self.host}:{self.port} answered: {checked}" + ("; login accepted" if self.username else "")

    def _login(self, smtp: smtplib.SMTP) -> None:
        """Log in with one mechanism (PLAIN, else LOGIN): a refused password is not tried again another way."""
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
        if mechanism is None:
            raise MailConfigError(f"{self.host}:{self.port} offers no password login (AUTH PLAIN or LOGIN)")
        smtp.user, smtp.password = self.username, self._password
        try:
            smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
        finally:
            smtp.password = ""  # smtplib keeps it on the object otherwise

    def build(self, mail: OutgoingMail) -> bytes:
        """Return the message as it goes over the wire: text and HTML alternatives, our headers."""
        # The compat32 MIME classes build a message about three times faster than EmailMessage's header
        # registry; every value here is already one checked line (addresses validated, subject collapsed).
        message = MIMEMultipart("alternative") if mail.html else MIMEText(mail.text, "plain", _UTF8_QP)
        message["From"] = self.sender
        message["To"] = mail.to
        if self.reply_to:
            message["Reply-To"] = self.reply_to
        message["Subject"] = Header(mail.subject, "utf-8") if not mail.subject.isascii() else mail.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = mail.message_id
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: out-of-office robots do not answer it
        if mail.html:
            message.attach(MIMEText(mail.text, "plain", _UTF8_QP))
            message.attach(MIMEText(mail.html, "html", _UTF8_QP))
        return message.as_bytes(policy=_WIRE)


class SmtpSession:
    """One SMTP connection, opened on the first message and reopened when the server has dropped it."""

    def __init__(self, mailer: SmtpMailer):
        self.mailer = mailer
        self._smtp: smtplib.SMTP | None = None

    def send(self, mail: OutgoingMail) -> None:
        """Hand one message to the server; return once it accepted it (250 after DATA), else raise MailError."""
        payload = self.mailer.build(mail)
        if self._smtp is None:
            code, reply = self._call(self._open().mail, self.mailer.sender)
        else:
            try:
                code, reply = self._smtp.mail(self.mailer.sender)
            except (OSError, smtplib.SMTPServerDisconnected):
                # The connection kept from the previous message timed out on the server's side: nothing of
                # this message was sent yet, so one fresh connection is safe.
                self._drop()
                code, reply = self._call(self._open().mail, self.mailer.sender)
        self._check(code, reply, "sender", refused=MailConfigError)
        self._check(*self._call(self._smtp.rcpt, mail.to), "recipient", refused=MailRefused)
        # A drop during DATA leaves unknown whether the server kept the message: the outbox sends it again,
        # with the same Message-ID.
        self._check(*self._call(self._smtp.data, payload), "message", refused=MailRefused)

    def _call(self, command, *args) -> tuple[int, bytes]:
        """Run one SMTP command; a dropped connection becomes MailUnavailable, a refused DATA its reply."""
        try:
            return command(*args)
        except smtplib.SMTPDataError as exc:  # DATA itself (354) was refused
            return exc.smtp_code, exc.smtp_error
        except (OSError, smtplib.SMTPServerDisconnected):
            self._drop()
            raise MailUnavailable("the mail server dropped the connection") from None

    def _check(self, code: int, reply: bytes, what: str, *, refused: type[MailError]) -> None:
        if 200 <= code < 400:
            return
        message = f"the mail server answered {code} {_text(reply)} for the {what}"
        if code == SERVICE_CLOSING or code < 0:
            self._drop()
        else:
            self._reset()
        # A reply about this message on a connection still open says nothing about the next message.
        about_this_one = self._smtp is not None and refused is not MailConfigError
        if 500 <= code < 600:
            raise refused(message, code=code, server_wide=not about_this_one)
        raise MailUnavailable(message, code=code if code > 0 else None, server_wide=not about_this_one)

    def _open(self) -> smtplib.SMTP:
        self._smtp = self.mailer.connect()
        return self._smtp

    def _reset(self) -> None:
        """Abort the current message so the connection serves the next one; drop it if even that fails."""
        try:
            self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        _close_quietly(self._smtp)
        self._smtp = None

    def close(self) -> None:
        """Say QUIT; a server that has already gone is fine (every accepted message is already accepted)."""
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._drop()


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.close()
        except OSError:
            pass


def _text(reply: bytes | str) -> str:
    """Return a server's reply as one short line (it is stored with a bounced mail)."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:300]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
