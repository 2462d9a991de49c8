"""Log forging: an outside value with CR/LF or other control characters never starts a log line of its own."""
from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest

from app import logs

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORGED = "2026-11-29 20:00:00,000 INFO app.services.grants: grant.active upn=mallory@uni.test"


@pytest.fixture
def log_lines():
    """Log through a real handler with the portal's format; return a function that gives the written lines."""
    logs.install_escaping()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger("tests.log_escaping")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, lambda: stream.getvalue().splitlines()
    logger.removeHandler(handler)


@pytest.mark.parametrize("value", [
    "x\r\n" + FORGED, "x\n" + FORGED, "x\r" + FORGED, "x\u2028" + FORGED, "x\x85" + FORGED, "x\x0b\x0c" + FORGED,
])
def test_a_line_break_in_a_value_stays_on_the_line(log_lines, value):
    logger, lines = log_lines
    logger.warning("sign-in refused by the authority: %s", value)
    logger.warning("unknown user " + value)  # a value formatted into the message by the caller, too
    assert len(lines()) == 2
    assert not any(line.startswith(FORGED) for line in lines())
    assert all(FORGED in line for line in lines())  # nothing is lost: it is visible, escaped, on the same line


def test_escapes_are_readable():
    assert logs.escape("a\r\nb\tc\x1b[31md\u202ee") == "a\\r\\nb\\tc\\x1b[31md\\u202ee"
    assert logs.escape("Müller € ñ UNI\\ada") == "Müller € ñ UNI\\ada"  # printable text is left alone


def test_an_exception_message_cannot_forge_a_line(log_lines):
    logger, lines = log_lines
    try:
        raise ValueError("bad value\n" + FORGED)
    except ValueError:
        logger.exception("unexpected error")
    written = lines()
    assert written[0].endswith("unexpected error")
    assert written[1] == "Traceback (most recent call last):"
    assert all(line.startswith(logs.TRACE_INDENT) for line in written[2:])
    assert any(FORGED in line for line in written)


def test_the_cli_logs_escaped():
    """`proofup` installs the same escaping before it configures its own log handler."""
    script = ("import logging, sys; from app import cli; cli.main(['doctor']); "
              f"logging.getLogger('app.cli').warning('diagnose %s', 'x\\n' + {FORGED!r})")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    logged = [line for line in done.stderr.splitlines() if "diagnose" in line]
    assert len(logged) == 1 and FORGED in logged[0], done.stderr
    assert not any(line.startswith(FORGED) for line in done.stderr.splitlines())


def test_an_invite_links_token_never_reaches_a_written_line():
    import logging

    from app.logs import JsonFormatter, install_escaping, scrub_links

    install_escaping()
    token = "Ab3_-" * 8 + "xyz"
    record = logging.getLogger("gunicorn.access").makeRecord(
        "gunicorn.access", logging.INFO, __file__, 1, '"GET /invite/%s HTTP/1.1" 200 "https://p.test/invite/%s"',
        (token, token), None)
    assert token not in record.getMessage() and record.getMessage().count("/invite/(token)") == 2
    access = logging.getLogger("gunicorn.access").makeRecord(
        "gunicorn.access", logging.INFO, __file__, 1, "%(U)s", ({"U": f"/invite/{token}", "m": "GET", "s": "200"},),
        None)
    assert token not in JsonFormatter().format(access)
    assert scrub_links("/invite/") == "/invite/" and scrub_links("/diagnosis") == "/diagnosis"
