"""The pure parts of the Graph adapter: request shapes, validation, Retry-After, error mapping, typed parsing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.adapters.graph import (
    BoundedRetryHandler,
    chunks,
    error_for,
    evidence_requests,
    map_devices,
    map_methods,
    map_sign_ins,
    map_user,
    odata_string,
    parse_retry_after,
    read_part,
    validate_upn,
    validate_user_id,
)
from app.domain.evidence import AUTHENTICATOR_APP_ID, GraphError, GraphThrottled, GraphUnavailable
from kiota_http.middleware.options import RetryHandlerOption


def test_evidence_requests_name_each_part_and_escape_the_upn():
    parts = {p["id"]: p for p in evidence_requests("o'brien@uni.test")}
    assert list(parts) == ["user", "methods", "devices", "sign_ins"]
    assert all(p["method"] == "GET" and p["url"].startswith("/") for p in parts.values())
    assert parts["user"]["url"] == "/users/o%27brien@uni.test?$select=id,userPrincipalName,displayName,accountEnabled"
    assert parts["methods"]["url"] == "/users/o%27brien@uni.test/authentication/methods"
    query = parse_qs(urlsplit(parts["sign_ins"]["url"]).query)
    assert query["$filter"] == [f"userPrincipalName eq 'o''brien@uni.test' and appId eq '{AUTHENTICATOR_APP_ID}'"]
    assert query["$top"] == ["5"]
    assert " " not in parts["sign_ins"]["url"]


def test_odata_string_doubles_quotes():
    assert odata_string("a'b''c") == "'a''b''''c'"


@pytest.mark.parametrize("bad", ["", "ada", "ada@", "@uni.test", "ada@uni", "a/b@uni.test", "ada@uni.test/x",
                                 "ada lovelace@uni.test", "ada@uni.test?$top=1", "../x@uni.test", "ada@@uni.test",
                                 "ada@uni.test#", "a" * 65 + "@uni.test", "ada+x@uni.test", None, 42])
def test_bad_upns_are_refused_before_any_request(bad):
    with pytest.raises(ValueError):
        validate_upn(bad)
    with pytest.raises(ValueError):
        evidence_requests(bad)


def test_good_upns_and_object_ids_pass():
    assert validate_upn("ada.lovelace@uni.test") == "ada.lovelace@uni.test"
    assert validate_upn("o'brien_x#1@sub.uni.test") == "o'brien_x#1@sub.uni.test"
    assert validate_user_id("0c9e6b74-1f3d-4a58-b2e6-7d4a9f1c3e85") == "0c9e6b74-1f3d-4a58-b2e6-7d4a9f1c3e85"


def test_chunks_keep_order_and_limit():
    ids = [str(i) for i in range(45)]
    parts = chunks(ids)
    assert [len(c) for c in parts] == [20, 20, 5]
    assert sum(parts, []) == ids
    assert chunks([]) == []


def test_retry_after_reads_seconds_fractions_and_dates():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.75") == 0.75
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    in_ten = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=10), usegmt=True)
    assert 8 <= parse_retry_after(in_ten) <= 10


def test_error_for_picks_the_class_and_keeps_code_and_retry_after():
    throttled = error_for(429, {"error": {"code": "TooManyRequests"}}, {"retry-after": "1.5"}, "sign_ins")
    assert isinstance(throttled, GraphThrottled) and throttled.retry_after == 1.5
    assert throttled.code == "TooManyRequests" and throttled.transient
    assert error_for(429, None, {"Retry-After": "3"}, "x").retry_after == 3.0
    unavailable = error_for(503, {}, {}, "methods")
    assert isinstance(unavailable, GraphUnavailable) and unavailable.status == 503
    missing = error_for(404, {"error": {"code": "Request_ResourceNotFound", "message": "x"}}, None, "user")
    assert type(missing) is GraphError and missing.code == "Request_ResourceNotFound" and not missing.transient
    assert "404" in str(missing) and "user" in str(missing)


# Bodies shaped like the examples on learn.microsoft.com (authentication-list-methods, signin-list, ...).
METHODS_BODY = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('x')/authentication/methods",
    "value": [
        {"@odata.type": "#microsoft.graph.passwordAuthenticationMethod",
         "id": "28c10230-6103-485e-b985-444c60001490", "createdDateTime": "2026-01-02T10:00:00Z"},
        {"@odata.type": "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod",
         "id": "6a1b-authenticator", "displayName": "Pixel 8", "deviceTag": "SoftwareTokenActivated",
         "phoneAppVersion": "6.2401.0119", "createdDateTime": "2026-03-04T05:06:07Z"},
        {"@odata.type": "#microsoft.graph.temporaryAccessPassAuthenticationMethod", "id": "tap-1",
         "lifetimeInMinutes": 60, "isUsableOnce": True},
        {"@odata.type": "#microsoft.graph.someFutureMethod", "id": "future-1"},
        {"@odata.type": "#microsoft.graph.qrCodePinAuthenticationMethod", "id": "qr-1"},
        {"@odata.type": "#microsoft.graph.externalAuthenticationMethod", "id": "ext-1", "displayName": "Partner"},
        {"id": "no-type-1", "displayName": "A method without a type"},
    ],
}


def test_methods_map_to_kinds_and_strength():
    """An unknown type, or none at all, counts as a method: the portal never unlocks on a shape it cannot read."""
    methods = map_methods(METHODS_BODY)
    assert [m.kind for m in methods] == ["password", "microsoftAuthenticator", "temporaryAccessPass", "unknown",
                                         "qrCodePin", "externalAuthentication", "unknown"]
    assert [m.strong for m in methods] == [False, True, False, True, False, True, True]
    assert (methods[3].display_name, methods[5].display_name) == ("someFutureMethod", "Partner")
    assert methods[6].display_name == "A method without a type"
    assert methods[1].display_name == "Pixel 8"
    assert methods[1].created == datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    assert map_methods({"value": []}) == ()


def test_user_devices_and_sign_ins_parse_into_typed_results():
    user = map_user({"id": "u1", "userPrincipalName": "ada@uni.test", "displayName": "Ada", "accountEnabled": False})
    assert (user.id, user.upn, user.display_name, user.account_enabled) == ("u1", "ada@uni.test", "Ada", False)
    devices = map_devices({"value": [{"@odata.type": "#microsoft.graph.device", "id": "d1",
                                      "displayName": "Pixel 8", "operatingSystem": "Android"}]})
    assert [(d.id, d.display_name, d.operating_system) for d in devices] == [("d1", "Pixel 8", "Android")]
    sign_ins = map_sign_ins({"value": [
        {"id": "s1", "createdDateTime": "2026-02-01T08:00:00Z", "appId": AUTHENTICATOR_APP_ID,
         "appDisplayName": "Microsoft Authenticator App", "clientAppUsed": "Mobile Apps and Desktop clients",
         "status": {"errorCode": 0}},
        {"id": "s2", "createdDateTime": "2026-02-01T09:00:00Z", "appId": AUTHENTICATOR_APP_ID,
         "appDisplayName": "Microsoft Authenticator App", "status": {"errorCode": 50074,
                                                                    "failureReason": "Strong auth required"}},
    ]})
    assert [(s.id, s.status_code) for s in sign_ins] == [("s1", 0), ("s2", 50074)]
    assert sign_ins[0].created == datetime(2026, 2, 1, 8, tzinfo=timezone.utc)
    assert sign_ins[0].client_app == "Mobile Apps and Desktop clients"


def test_retry_middleware_never_sleeps_past_the_cap():
    handler = BoundedRetryHandler(RetryHandlerOption(delay=0.0, max_retries=1), max_wait=2.0)
    short = httpx.Response(429, headers={"Retry-After": "1"})
    long = httpx.Response(429, headers={"Retry-After": "30"})
    assert handler.get_delay_time(0, short, 0.0) == 1
    assert handler.get_delay_time(0, long, 0.0) >= RetryHandlerOption.MAX_DELAY  # the stock handler then gives up
    assert handler.get_delay_time(1, httpx.Response(503), 0.0) <= 2.0


def test_read_part_never_raises():
    assert read_part(None, map_methods, "methods").code == "no_answer"
    missing = read_part((404, {}, {"error": {"code": "Request_ResourceNotFound"}}), map_user, "user")
    assert missing.status == 404
    unreadable = read_part((200, {}, "<html>proxy error</html>"), map_user, "user")
    assert isinstance(unreadable, GraphError) and unreadable.code == "unreadable"
    assert read_part((200, {}, {"value": []}), map_methods, "methods") == ()


def test_the_sweeps_json_mappers_read_what_the_typed_models_read():
    from app.adapters import graph
    from app.adapters.graph import map_method_rows, map_sign_in_page, map_user_page

    methods = {"value": [{"@odata.type": kind, "id": str(i), "createdDateTime": "2026-11-01T08:00:00Z"}
                         for i, kind in enumerate(graph.METHOD_KINDS)]
               + [{"@odata.type": "#microsoft.graph.fido2AuthenticationMethod", "id": "f", "displayName": "Key"},
                  {"@odata.type": "#microsoft.graph.newShinyMethod", "id": "n", "displayName": "Shiny"},
                  {"id": "bare"}]}
    assert map_method_rows(methods) == map_methods(methods)
    assert map_method_rows(METHODS_BODY) == map_methods(METHODS_BODY)
    users, link = map_user_page({"value": [{"id": "u1", "userPrincipalName": "a@uni.test", "displayName": "A",
                                            "accountEnabled": True, "registeredDevices": [
                                                {"@odata.type": "#microsoft.graph.device", "id": "d1",
                                                 "displayName": "Phone", "operatingSystem": "iOS"}]}]}), None
    assert users[0][0].account_enabled and users[0][1][0].display_name == "Phone"
    rows, link = map_sign_in_page({"value": [{"id": "s", "userId": "U1", "userPrincipalName": "A@uni.test",
                                              "createdDateTime": "2026-11-27T09:00:00Z", "appId": "x",
                                              "status": {"errorCode": 50074}}],
                                   "@odata.nextLink": "https://graph.test/v1.0/auditLogs/signIns?$skiptoken=1"})
    assert rows[0][:2] == ("u1", "a@uni.test") and rows[0][2].status_code == 50074 and link.endswith("=1")


COLLECTION_SHAPES = [None, [], {"value": "x"}, {"value": [1]}, {"value": [{"id": 5}]}]


@pytest.mark.parametrize(("mapper", "body"), [
    *[("map_method_rows", b) for b in COLLECTION_SHAPES],
    *[("map_user_page", b) for b in COLLECTION_SHAPES],
    *[("map_sign_in_page", b) for b in COLLECTION_SHAPES],
    ("map_method_rows", {"value": [{"id": "m", "createdDateTime": "yesterday"}]}),
    ("map_user_page", {"value": [{"id": "u", "registeredDevices": "x"}]}),
    ("map_user_page", {"value": [{"displayName": "no id"}]}),
    ("map_sign_in_page", {"value": [], "@odata.nextLink": 3}),
])
def test_the_sweeps_json_mappers_refuse_other_shapes(mapper, body):
    from app.adapters import graph

    assert isinstance(read_part((200, {}, body), getattr(graph, mapper), "x"), GraphError)
