#!/usr/bin/env python3
"""Benchmark the outbox: 1,000 queued mails sent to a local SMTP server, against raw smtplib sending the same.

Real parts: aiosmtpd on loopback (STARTTLS with a trustme certificate, as the tests use), the store
(SQLite file, or PostgreSQL with --database-url), the SMTP adapter, the templates and the worker's mail
pass (OutboxSender.send_due, as `proofup worker` calls it every tick: 200 mails a pass, 50 a connection).

Measured, each run on a fresh database and server:
  queue    1,000 OutboxStore.queue() calls, each its own transaction (as a use case queues one notice)
  outbox   send_due() passes until the outbox is empty: claim, render (English), send, mark sent
  raw      smtplib alone: the same 1,000 messages, rendered beforehand, over the same number of
           connections (one per 50), with no database and no rendering: the floor for this server
The ratio outbox / raw is what the outbox's guarantees (a claim, a record per mail, rendering) cost.

Usage: .venv/bin/python bench/bench_mail.py [--mails 1000] [--runs 3] [--database-url URL]
"""
from __future__ import annotations

import argparse
import logging
import smtplib
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.adapters.directory_embedded import EmbeddedDirectory  # noqa: E402
from app.adapters.mail_templates import MailTemplates  # noqa: E402
from app.adapters.mailer import SmtpMailer  # noqa: E402
from app.adapters.store import OutboxStore  # noqa: E402
from app.adapters.store import Store  # noqa: E402
from app.domain.mail import MailState, OutgoingMail, new_message_id  # noqa: E402
from app.seed import load_seed  # noqa: E402
from app.services.outbox import BATCH_SIZE, OutboxSender  # noqa: E402
from tests.fixtures.smtp import start_smtp_server  # noqa: E402

SENDER = "proofup@uni.test"
PARAMS = {"when": "2026-09-01T09:00:00+00:00", "minutes": 30, "desk": "+49 30 1234 5678"}


def addresses(count: int) -> list[str]:
    return [f"student{n:04d}@uni.test" for n in range(count)]


def run_outbox(workdir: Path, count: int, database_url: str | None) -> tuple[float, float, int]:
    """Queue and send `count` mails through the outbox; return (queue seconds, send seconds, passes)."""
    server = start_smtp_server(workdir / "smtp-outbox", "starttls")
    store = Store(database_url or f"sqlite:///{workdir / 'outbox.sqlite3'}")
    store.upgrade()
    try:
        outbox = OutboxStore(store, sender=SENDER)
        started = time.perf_counter()
        for n, to in enumerate(addresses(count)):
            outbox.queue("security_unlocked", to=to, upn=to, params=PARAMS, dedupe_key=f"bench:{workdir.name}:{n}")
        queued = time.perf_counter() - started
        mailer = SmtpMailer(host=server.host, port=server.port, security="starttls", ca_bundle=server.ca_file,
                            sender=SENDER)
        sender = OutboxSender(outbox, mailer, MailTemplates(), EmbeddedDirectory(load_seed()))
        started, passes = time.perf_counter(), 0
        while sender.send_due().handled:
            passes += 1
        sent = time.perf_counter() - started
        counts = outbox.counts()
        assert counts[MailState.SENT] == count and len(server.mailbox.wait_for(count)) == count, counts
        return queued, sent, passes
    finally:
        store.dispose()
        server.stop()


def run_raw(workdir: Path, count: int) -> float:
    """Send the same messages with smtplib alone, one connection per batch; return seconds."""
    server = start_smtp_server(workdir / "smtp-raw", "starttls")
    try:
        mailer = SmtpMailer(host=server.host, port=server.port, security="starttls", ca_bundle=server.ca_file,
                            sender=SENDER)
        rendered = MailTemplates().render("security_unlocked", "en", {"name": "student", "upn": "s", **PARAMS})
        payloads = [(to, mailer.build(OutgoingMail(new_message_id(SENDER), to, rendered.subject, rendered.text,
                                                   rendered.html))) for to in addresses(count)]
        context = ssl.create_default_context(cafile=server.ca_file)
        started = time.perf_counter()
        for first in range(0, count, BATCH_SIZE):
            with smtplib.SMTP(server.host, server.port, timeout=30) as smtp:
                smtp.starttls(context=context)
                for to, payload in payloads[first:first + BATCH_SIZE]:
                    smtp.sendmail(SENDER, [to], payload)
        elapsed = time.perf_counter() - started
        assert len(server.mailbox.wait_for(count)) == count
        return elapsed
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="proofup-bench-mail-") as tmp:
            workdir = Path(tmp) / f"run{run}"
            workdir.mkdir()
            queued, sent, passes = run_outbox(workdir, args.mails, args.database_url)
            raw = run_raw(workdir, args.mails)
        rows.append((queued, sent, raw))
        print(f"run {run + 1}: queue {queued:6.2f} s   outbox send {sent:6.2f} s ({passes} passes, "
              f"{args.mails / sent:5.0f} mails/s)   raw smtplib {raw:6.2f} s ({args.mails / raw:5.0f} mails/s)   "
              f"ratio {sent / raw:4.2f}", flush=True)
    queued, sent, raw = (statistics.median(column) for column in zip(*rows))
    print(f"median of {args.runs}: queue {queued:.2f} s, outbox send {sent:.2f} s "
          f"({args.mails / sent:.0f} mails/s), raw smtplib {raw:.2f} s, ratio {sent / raw:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
