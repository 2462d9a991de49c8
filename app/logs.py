"""Log format (plain text, or one JSON object per line), the request id every line of a request carries, and
escaping: no outside value can forge a line, whatever the format."""
from __future__ import annotations

import json
import logging
import os
import re
import traceback
import uuid
from datetime import datetime, timezone
from typing import Any

FORMATS = ("plain", "json")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_ID_HEADER = "X-Request-ID"
# What a proxy's id may look like (nginx's $request_id is 32 hex digits); anything else is replaced.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
# The fields of gunicorn's access record that go into a JSON line; never its environ or request headers.
_ACCESS_FIELDS = {"h": "remote_addr", "m": "method", "U": "path", "s": "status", "B": "bytes", "M": "duration_ms",
                  "{x-request-id}o": "request_id"}


# C0 and C1 controls (CR, LF, ESC, NEL, ...), Unicode line and paragraph separators and the bidi overrides that
# reorder what a reader sees: any of them lets a value start a fake line or hide part of a real one.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Every line of a traceback after its first starts with this: a line break in an exception's message can
# then never pass for a record of its own (records start at the first column).
TRACE_INDENT = "  | "


def escape(text: str) -> str:
    """Return text on one line, with each control character written out as \\n, \\r, \\x1b or \\u2028."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


# An invite link's token (mailed, valid for days) in a request line or path: the log keeps only "/invite/…".
_INVITE_LINK = re.compile(r"(/invite/)[A-Za-z0-9_-]{8,}")


def scrub_links(text: str) -> str:
    """Return text with the token of every invite link in it replaced (a log must not open an invite)."""
    return _INVITE_LINK.sub(r"\1(token)", text) if "/invite/" in text else text


def escape_block(text: str) -> str:
    """Escape a multi-line block (a traceback) line by line and indent every line after the first."""
    lines = [escape(line) for line in text.rstrip("\n").split("\n")]
    return ("\n" + TRACE_INDENT).join(lines)


class SafeLogRecord(logging.LogRecord):
    """A log record whose message, arguments, traceback and stack come out escaped, whatever the formatter."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.exc_info and self.exc_info[0] is not None:
            # Formatters use exc_text when it is set instead of formatting the exception themselves.
            self.exc_text = escape_block("".join(traceback.format_exception(*self.exc_info)))
        if self.stack_info:
            self.stack_info = escape_block(self.stack_info)

    def getMessage(self) -> str:  # noqa: N802 - logging's name
        return scrub_links(escape(super().getMessage()))


def install_escaping() -> None:
    """Make every log record of this process escape its outside values (create_app and configure call this)."""
    if logging.getLogRecordFactory() is not SafeLogRecord:
        logging.setLogRecordFactory(SafeLogRecord)


def request_id_from(header: str | None) -> str:
    """Return the proxy's request id if it is well-formed, else a fresh one."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """Return the id of the request being served, if any."""
    try:
        from flask import g, has_request_context
    except ImportError:  # pragma: no cover - Flask is a dependency
        return None
    return g.get("request_id") if has_request_context() else None


class RequestIdFilter(logging.Filter):
    """Give every record the id of the request it was logged in ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return True


class PlainFormatter(logging.Formatter):
    """The demo's plain lines, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", "-")
        return line if request_id == "-" else f"{line} [request {request_id}]"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, process, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            # gunicorn hands its access atoms as the arguments: keep the harmless ones, as fields.
            out.update({name: scrub_links(str(record.args[atom])) if name == "path" else record.args[atom]
                        for atom, name in _ACCESS_FIELDS.items() if record.args.get(atom) not in (None, "-")})
            out["message"] = f"{out.get('method', '')} {out.get('path', '')} {out.get('status', '')}".strip()
        request_id = getattr(record, "request_id", "-")
        if request_id != "-":
            out.setdefault("request_id", request_id)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii: every control or separator character is escaped, so a record is always one line.
        return json.dumps(out, ensure_ascii=True, default=str)


def log_format(environ=os.environ) -> str:
    """Return PROOFUP_LOG_FORMAT (plain or json); ValueError for anything else."""
    value = environ.get("PROOFUP_LOG_FORMAT", "plain").strip().lower() or "plain"
    if value not in FORMATS:
        raise ValueError(f"PROOFUP_LOG_FORMAT must be plain or json, not {value!r}")
    return value


def formatter_for(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else PlainFormatter()


def configure(level: str | int = "WARNING", fmt: str = "plain") -> None:
    """Send every logger's records to stderr in the chosen format, with request ids (CLI, worker, demo)."""
    install_escaping()  # an argument (a UPN, a reason) must never start a log line of its own
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_proofup", False)]:
        root.removeHandler(old)
    if root.handlers:  # someone else (pytest, an embedding program) already decides where logs go
        return
    handler = logging.StreamHandler()
    handler._proofup = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter_for(fmt))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level)


def gunicorn_config(level: str, fmt: str) -> dict[str, Any]:
    """Return gunicorn's logconfig_dict: its error and access logs and the portal's, in one format on stderr."""
    factory = "app.logs.JsonFormatter" if fmt == "json" else "app.logs.PlainFormatter"
    handler = {"class": "logging.StreamHandler", "formatter": "proofup", "filters": ["request_id"],
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "app.logs.RequestIdFilter"}},
        "formatters": {"proofup": {"()": factory}},
        "handlers": {"stderr": handler},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        },
    }
