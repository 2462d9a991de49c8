"""Request ids on every response, error page and log line; JSON logs that are one object per line."""
from __future__ import annotations

import io
import json
import logging
import re

import pytest

from app import create_app, logs
from tests.web.conftest import demo_settings

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def broken_client(tmp_path, services):
    """A portal with one view that fails, as a bug would."""
    app = create_app(demo_settings(tmp_path), services=services)

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    return app.test_client()


@pytest.fixture
def json_lines():
    """Collect the app's records as the JSON handler formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RequestIdFilter())
    logger = logging.getLogger("app")
    logger.addHandler(handler)
    yield lambda: [line for line in stream.getvalue().split("\n") if line]
    logger.removeHandler(handler)


def test_every_response_names_its_request(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3 and all(HEX_ID.fullmatch(i) for i in ids)


def test_a_proxys_well_formed_request_id_is_kept(client):
    assert client.get("/healthz", headers={"X-Request-ID": "nginx-3f2a9c0d11"}).headers["X-Request-ID"] == \
        "nginx-3f2a9c0d11"


@pytest.mark.parametrize("given", ["short", "x" * 65, "has space12", "semi;colon12", "<script>alert(1)</script>",
                                   "caf\u00e9-0123456789"])
def test_a_malformed_request_id_is_replaced(client, given):
    assert HEX_ID.fullmatch(client.get("/healthz", headers={"X-Request-ID": given}).headers["X-Request-ID"])


def test_error_pages_show_the_reference_a_student_can_quote(client):
    page = client.get("/no-such-page")
    assert page.status_code == 404
    assert f"give them this reference: {page.headers['X-Request-ID']}" in page.get_data(as_text=True)


def test_an_unexpected_error_logs_the_id_its_page_shows(broken_client, json_lines):
    page = broken_client.get("/boom", headers={"X-Request-ID": "req-0123456789"})
    assert page.status_code == 500 and "req-0123456789" in page.get_data(as_text=True)
    records = [json.loads(line) for line in json_lines()]
    failure = next(r for r in records if r["message"] == "unexpected error")
    assert failure["request_id"] == "req-0123456789" and failure["level"] == "ERROR"
    assert "RuntimeError: a bug" in failure["exception"] and failure["logger"] == "app.web.errors"


def test_a_json_record_is_one_line_whatever_the_values(json_lines):
    logging.getLogger("app.test").warning("sign-in refused for %s", "eve@uni.test\r\n{\"level\": \"INFO\"}\u2028x")
    (line,) = json_lines()
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["logger"] == "app.test" and "request_id" not in record
    assert "eve@uni.test" in record["message"] and "\u2028" not in line


def test_plain_stays_the_default_and_json_is_chosen_by_setting():
    assert logs.log_format({}) == "plain"
    assert logs.log_format({"PROOFUP_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ValueError, match="PROOFUP_LOG_FORMAT"):
        logs.log_format({"PROOFUP_LOG_FORMAT": "xml"})
