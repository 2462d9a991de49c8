"""Rate limits: they trip with a clear, translated 429 and Retry-After, change nothing, and key on the right party."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from app import create_app
from app.config import Settings, SettingsError, load_settings
from tests.web.conftest import SEED, csrf_of, demo_settings, sign_in

HALF = "ada.lovelace@uni.test"
OTHER = "grace.hopper@uni.test"
REQUIRED = {"PROOFUP_SECRET_KEY": "test-secret-key-0123456789", "PROOFUP_AUTHORITY": "https://idp.test/adfs",
            "PROOFUP_CLIENT_ID": "portal"}


def portal(tmp_path, services, **overrides):
    """Return a test client of a portal with these settings over the shared test services."""
    app = create_app(demo_settings(tmp_path, **overrides), services=services)
    app.config["TESTING"] = True
    return app


def pending_sign_ins(services) -> int:
    with services.store.engine.connect() as db:
        return db.execute(text("SELECT count(*) FROM sign_in_flows")).scalar_one()


def retry_after(response) -> int:
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= 3600
    return seconds


def test_sign_in_limit_answers_a_clear_page_and_stores_nothing(tmp_path, services):
    client = portal(tmp_path, services, rate_limit_sign_in="3 per minute").test_client()
    assert [client.get("/sign-in").status_code for _ in range(3)] == [302, 302, 302]
    stored = pending_sign_ins(services)
    limited = client.get("/sign-in")
    assert limited.status_code == 429
    assert retry_after(limited) <= 60
    html = limited.get_data(as_text=True)
    assert "<h1>Please slow down</h1>" in html and "Nothing was changed" in html and "seconds" in html
    assert 'lang="en"' in html and 'href="/"' in html  # the shared, accessible error page with a way on
    assert limited.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert pending_sign_ins(services) == stored


def test_limited_page_is_translated(tmp_path, services):
    client = portal(tmp_path, services, rate_limit_sign_in="1 per minute").test_client()
    client.get("/sign-in")
    limited = client.get("/sign-in", headers={"Accept-Language": "de-DE,de;q=0.9"})
    html = limited.get_data(as_text=True)
    assert limited.status_code == 429
    assert "Bitte etwas langsamer" in html and "Sekunden" in html and "Es wurde nichts geändert" in html


def test_callback_is_limited_per_address(tmp_path, services):
    client = portal(tmp_path, services, rate_limit_sign_in="2 per minute").test_client()
    codes = [client.post("/auth/callback", data={"state": "unknown", "code": "x"}).status_code for _ in range(3)]
    assert codes == [303, 303, 429]


def test_limited_unlock_leaves_no_grant_and_no_membership(tmp_path, services, directory):
    client = portal(tmp_path, services, rate_limit_unlock="2 per hour").test_client()
    token = csrf_of(sign_in(client, HALF))
    for _ in range(2):
        assert client.post("/unlock", data={"csrf_token": token}).headers["Location"].endswith("/guide")
        client.post("/cancel", data={"csrf_token": token})
    limited = client.post("/unlock", data={"csrf_token": token})
    assert limited.status_code == 429 and retry_after(limited) > 60  # the window is an hour
    assert "Please slow down" in limited.get_data(as_text=True)
    assert [(g.state, g.end_reason) for g in services.store.grants_for(HALF)] == [("cancelled", "cancelled")] * 2
    assert services.store.open_grant_for(HALF) is None
    assert directory.list_members(SEED.bypass_group_dn) == []


def test_status_limit_answers_json_and_is_per_student(tmp_path, services):
    app = portal(tmp_path, services, rate_limit_status="3 per minute")
    first, second = app.test_client(), app.test_client()  # two students behind one address
    page = sign_in(first, HALF)
    sign_in(second, OTHER)
    assert [first.get("/status").status_code for _ in range(2)] == [200, 200]
    # "check now" shares the poll's counter: both may end in a Graph check.
    assert first.post("/status/check", headers={"X-CSRFToken": csrf_of(page)}).status_code == 200
    limited = first.get("/status")
    assert limited.status_code == 429 and limited.is_json
    body = limited.get_json()
    assert body["error"] == "rate_limited" and body["retry_after"] == retry_after(limited)
    assert "Nothing was changed" in body["message"]
    assert [second.get("/status").status_code for _ in range(3)] == [200, 200, 200]
    assert second.get("/status").status_code == 429


def test_three_tabs_polling_every_two_seconds_stay_under_the_default_status_limit(client):
    assert Settings.rate_limit_status == load_settings(REQUIRED).rate_limit_status  # the test client uses it
    page = sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    polls_in_a_minute = 3 * (60 // 2 + 1)  # three tabs, one poll at 0 s, 2 s, ... 60 s, all inside one window
    answers = [client.get("/status").status_code for _ in range(polls_in_a_minute)]
    assert answers == [200] * polls_in_a_minute
    assert client.post("/status/check", headers={"X-CSRFToken": csrf_of(page)}).status_code == 200


def test_health_and_readiness_are_never_limited(tmp_path, services):
    tight = {name: "1 per minute" for name in ("rate_limit_sign_in", "rate_limit_unlock", "rate_limit_status",
                                               "rate_limit_diagnosis")}
    client = portal(tmp_path, services, **tight).test_client()
    for path in ("/healthz", "/readyz"):
        assert [client.get(path).status_code for _ in range(5)] == [200] * 5


def test_client_address_follows_the_trusted_proxy_hops(tmp_path, services):
    behind_proxy = portal(tmp_path, services, rate_limit_sign_in="1 per minute", proxy_hops=1).test_client()

    def sign_in_from(client, address):
        return client.get("/sign-in", headers={"X-Forwarded-For": address}).status_code

    assert sign_in_from(behind_proxy, "203.0.113.5") == 302
    assert sign_in_from(behind_proxy, "203.0.113.5") == 429
    assert sign_in_from(behind_proxy, "203.0.113.6") == 302  # another student behind the same proxy
    direct = portal(tmp_path, services, rate_limit_sign_in="1 per minute").test_client()
    assert sign_in_from(direct, "203.0.113.7") == 302
    assert sign_in_from(direct, "203.0.113.8") == 429  # without trusted proxies a forged header changes nothing


def test_redis_counts_are_shared_and_an_unreachable_redis_falls_back_to_memory(tmp_path, services):
    app = portal(tmp_path, services, rate_limit_sign_in="1 per minute", redis_url="redis://127.0.0.1:1/0")
    (limiter,) = app.extensions["limiter"]
    assert type(limiter.storage).__name__ == "RedisStorage"
    client = app.test_client()
    assert client.get("/sign-in").status_code == 302  # nothing listens on port 1: counted in memory instead
    assert client.get("/sign-in").status_code == 429


@pytest.mark.parametrize("name", ["PROOFUP_RATE_LIMIT_SIGN_IN", "PROOFUP_RATE_LIMIT_UNLOCK",
                                  "PROOFUP_RATE_LIMIT_STATUS", "PROOFUP_RATE_LIMIT_DIAGNOSIS"])
@pytest.mark.parametrize("value", ["lots", "", "20 per fortnight", "-1/minute"])
def test_a_malformed_limit_stops_the_start_naming_the_setting(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({**REQUIRED, name: value})


def test_limits_in_flask_limiter_notation_are_accepted():
    settings = load_settings({**REQUIRED, "PROOFUP_RATE_LIMIT_UNLOCK": "5/hour;20/day",
                              "PROOFUP_RATE_LIMIT_SIGN_IN": "100 per minute"})
    assert (settings.rate_limit_unlock, settings.rate_limit_sign_in) == ("5/hour;20/day", "100 per minute")


def test_redis_url_must_be_redis_and_is_never_shown():
    with pytest.raises(SettingsError, match="PROOFUP_REDIS_URL"):
        load_settings({**REQUIRED, "PROOFUP_REDIS_URL": "http://cache:6379"})
    settings = load_settings({**REQUIRED, "PROOFUP_REDIS_URL": "redis://:hunter2-secret@cache:6379/0"})
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in repr(settings.redacted())


def test_without_redis_the_counts_live_in_the_swept_memory_storage(tmp_path, services):
    from app.web.limits import SweptMemoryStorage

    (limiter,) = portal(tmp_path, services).extensions["limiter"]
    assert isinstance(limiter.storage, SweptMemoryStorage)


def test_the_poll_counts_in_flask_limiters_storage_under_its_keys(tmp_path, services):
    """The poll's own limit check shares the storage and the keys: one count for every instance."""
    app = portal(tmp_path, services, rate_limit_status="2 per minute")
    client = app.test_client()
    sign_in(client, HALF)
    assert [client.get("/status").status_code for _ in range(3)] == [200, 200, 429]
    (limiter,) = app.extensions["limiter"]
    keys = [key for key in limiter.storage._windows if "/status/" in key]
    assert keys == [f"LIMITER/proofup/upn:{HALF.lower()}/status/2/1/minute"]


def test_an_unreachable_redis_leaves_the_poll_counted_in_memory(tmp_path, services):
    app = portal(tmp_path, services, rate_limit_status="2 per minute", redis_url="redis://127.0.0.1:1/0")
    client = app.test_client()
    sign_in(client, HALF)
    assert [client.get("/status").status_code for _ in range(3)] == [200, 200, 429]
