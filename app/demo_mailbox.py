"""The demo's mail server: aiosmtpd on loopback that keeps every message as an .eml file a newcomer can open,
and a small web page (its own port, demo only) that lists them and makes their links clickable: an invite
link from the desk is one click away."""
from __future__ import annotations

import re
import socket
import threading
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from pathlib import Path

HOST = "127.0.0.1"
_URL = re.compile(r"https?://[^\s<>\"']+")
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head><body><main><h1>{title}</h1>{body}</main></body></html>"""


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
        self._web = None

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
        if self._web is not None:
            self._web.shutdown()
            self._web = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Wait until at least `count` messages arrived; return them all."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def serve(self, port: int = 0) -> str:
        """Serve the mailbox page on loopback (a daemon thread); return its address."""
        from werkzeug.serving import make_server

        self._web = make_server(HOST, port or _free_port(), self.page, threaded=True)
        threading.Thread(target=self._web.serve_forever, name="demo-mailbox-page", daemon=True).start()
        return f"http://{HOST}:{self._web.server_port}/"

    def page(self, environ, start_response):
        """Answer the mailbox page: "/" lists the mail, "/<n>" shows one with clickable links."""
        from markupsafe import escape

        with self._arrived:
            messages = list(self.messages)
        path = environ.get("PATH_INFO", "/").strip("/")
        if not path:
            items = "".join(f'<li><a href="/{n}">{escape(m["Subject"] or "(no subject)")}</a> to '
                            f'{escape(m["To"] or "")}</li>' for n, m in reversed(list(enumerate(messages, 1))))
            html = PAGE.format(title="Demo mailbox", body=f"<ol reversed>{items}</ol>" if items else
                               "<p>No mail yet. Reload this page after the portal sent one.</p>")
        elif path.isdigit() and 1 <= int(path) <= len(messages):
            message = messages[int(path) - 1]
            part = message.get_body(("plain",))
            text = str(escape(part.get_content() if part is not None else ""))
            linked = _URL.sub(lambda m: f'<a href="{m.group()}">{m.group()}</a>', text)
            html = PAGE.format(title=escape(message["Subject"] or "(no subject)"),
                               body=f'<p>To {escape(message["To"] or "")}</p><pre>{linked}</pre>'
                                    '<p><a href="/">All mail</a></p>')
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"no such mail"]
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")])
        return [html.encode("utf-8")]

    def settings(self, sender: str) -> dict[str, object]:
        """Return the portal settings that send to this mailbox."""
        return {"smtp_host": HOST, "smtp_port": self.port, "smtp_security": "none", "smtp_from": sender}
