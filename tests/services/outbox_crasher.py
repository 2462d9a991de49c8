"""A sender process for the outbox crash tests: it SIGKILLs itself at a named point of a mail pass.

Usage: python -m tests.services.outbox_crasher DATABASE_URL SMTP_PORT CA_FILE POINT
POINT: after_claim (the mails are claimed, nothing sent) or after_accept (the server accepted the first mail,
not yet marked sent). Real time, real SMTP (STARTTLS to localhost), the real store; no hooks in production code.
"""
from __future__ import annotations

import os
import signal
import sys

from app.adapters.directory_embedded import EmbeddedDirectory
from app.adapters.mail_templates import MailTemplates
from app.adapters.mailer import SmtpMailer
from app.adapters.store import OutboxStore, Store
from app.seed import load_seed
from app.services.outbox import OutboxSender


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class DyingOutbox(OutboxStore):
    def claim_due(self, limit, claim_seconds):
        claimed = super().claim_due(limit, claim_seconds)
        die()
        return claimed


class DyingMailer(SmtpMailer):
    def session(self):
        mailer_session = super().session()

        class Wrapped:
            def __enter__(self):
                self.inner = mailer_session.__enter__()
                return self

            def send(self, mail):
                self.inner.send(mail)  # the server said 250: accepted
                die()

            def __exit__(self, *exc):
                return mailer_session.__exit__(*exc)

        return Wrapped()


def main(url: str, port: str, ca_file: str, point: str) -> None:
    store = Store(url)
    outbox = (DyingOutbox if point == "after_claim" else OutboxStore)(store, sender="portal@uni.test")
    mailer = (SmtpMailer if point == "after_claim" else DyingMailer)(
        host="localhost", port=int(port), security="starttls", ca_bundle=ca_file, sender="portal@uni.test")
    OutboxSender(outbox, mailer, MailTemplates(), EmbeddedDirectory(load_seed())).send_due()
    sys.exit("the crash point was never reached")


if __name__ == "__main__":
    main(*sys.argv[1:])
