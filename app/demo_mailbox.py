"""The demo's mail server: aiosmtpd on loopback that keeps every message as an .eml file a newcomer can open."""
from __future__ import annotations

import socket
import threading
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from pathlib import Path

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class DemoMailbox:
    """A plain SMTP server on this machine only (the portal allows no TLS just for loopback) writing to a folder."""

    def __init__(self, folder: str | Path, port: int = 0):
        self.folder = Path(folder)
        self.port = port or _free_port()
        self.messages: list[EmailMessage] = []
        self._arrived = threading.Condition()
        self._controller = None

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = message_from_bytes(raw, policy=DEFAULT_POLICY)
        with self._arrived:
            self.messages.append(message)
            number = len(self.messages)
            recipient = (envelope.rcpt_tos or ["unknown"])[0].replace("/", "_")
            (self.folder / f"{number:04d}-{recipient}.eml").write_bytes(raw)
            self._arrived.notify_all()
        return "250 2.0.0 kept in the demo mailbox"

    def start(self) -> "DemoMailbox":
        """Listen on loopback; the folder is emptied (the demo starts afresh from its seed)."""
        from aiosmtpd.controller import Controller

        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.eml"):
            old.unlink()
        self._controller = Controller(self, hostname=HOST, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Wait until at least `count` messages arrived; return them all."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def settings(self, sender: str) -> dict[str, object]:
        """Return the portal settings that send to this mailbox."""
        return {"smtp_host": HOST, "smtp_port": self.port, "smtp_security": "none", "smtp_from": sender}
