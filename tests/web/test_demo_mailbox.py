"""The demo's mailbox: the portal's worker sends to a local SMTP server that keeps each mail as an .eml file."""
from __future__ import annotations

from app.demo import DemoStack

ADA = "ada.lovelace@uni.test"


def test_the_demo_keeps_the_students_mail_where_its_banner_says(tmp_path):
    stack = DemoStack(tmp_path, method_delay_seconds=0.0, check_interval_seconds=1.0, worker_interval_seconds=1.0,
                      confirm_interval_seconds=0.5).start()
    try:
        assert stack.settings.smtp_security == "none" and stack.settings.smtp_host == "127.0.0.1"
        assert stack.services.outbox.queue("security_unlocked", upn=ADA,
                                           params={"when": "2026-09-01T09:00:00+00:00", "minutes": 30, "desk": ""})
        (message,) = stack.mailbox.wait_for(1)
        assert message["To"] == ADA and message["From"] == "proofup@uni.test"
        (saved,) = (tmp_path / "mailbox").glob("*.eml")
        assert saved.name == f"0001-{ADA}.eml" and b"Message-ID" in saved.read_bytes()
        assert str((tmp_path / "mailbox").resolve()) in stack.banner()
    finally:
        stack.stop()
