"""The sign-in callback against hostile posts and a busy authority, with the real msal and the simulator.

One anonymous post used to stop every later sign-in: MSAL kept the posted `error` in its per-application
telemetry buffer and sent it in a header of the next token request, which `requests` refused. Here the
callback is posted poisoned and fuzzed (control characters, non-Latin-1, huge values, repeated keys),
and real sign-ins must still work afterwards; a 429 or 5xx from the token endpoint gives a clear
"busy" page for that student only.
"""
from __future__ import annotations

import logging
import random
import string
from urllib.parse import urlencode

import pytest

from app.demo import DemoStack, adfs_form_post
from app.web import SESSION_COOKIE
from tests.web.fakes import state_of

STUDENT = "ada.lovelace@uni.test"
OTHER = "grace.hopper@uni.test"
TOKEN_PATH = "/adfs/oauth2/token"
FORGED = "2026-11-29 20:00:00,000 INFO app.services.grants: grant.active upn=mallory@uni.test"
HOST = "127.0.0.1"  # the demo portal's host (PROOFUP_PUBLIC_URL), which the test client uses
POISON = ["x\ny", "€", "x\r\nSet-Cookie: a=b", "\x00", "ä" * 10, "a" * 10_000, "a" * 100_000, "\u2028", "\udcff"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # The fuzz posts hundreds of callbacks from one address: the sign-in rate limit is not what is tested here.
    stack = DemoStack(tmp_path_factory.mktemp("callback"), worker=False, method_delay_seconds=0.0,
                      rate_limit_sign_in="100000 per minute").start()
    yield stack
    stack.stop()


@pytest.fixture
def stack_clean(stack):
    stack.control("DELETE", "/faults")
    yield stack
    stack.control("DELETE", "/faults")


def fresh_state(client) -> str:
    """Start a sign-in in this client and return its state (a real pending flow in the store)."""
    return state_of(client.get("/sign-in").headers["Location"])


def authority_answer(stack, client, upn: str = STUDENT) -> dict[str, str]:
    """Start a sign-in in this browser and sign in at the simulated AD FS; return what it form_posts back."""
    auth_uri = client.get("/sign-in").headers["Location"]
    return adfs_form_post(auth_uri, upn, stack.seed.user(upn).password, stack.settings.ca_bundle).fields


def through_the_hop(client, answer):
    """Follow the callback's same-site hop to /auth/complete; return where that lands (not followed further)."""
    if answer.status_code == 413:
        return answer  # refused by its size before the callback ran
    assert answer.status_code == 303 and "/auth/complete" in answer.headers["Location"], answer.status_code
    return client.get(answer.headers["Location"])


def real_sign_in(stack, upn: str = STUDENT):
    """Sign in through the simulated AD FS in a new browser; return the answer of /auth/complete."""
    client = stack.app.test_client()
    return through_the_hop(client, client.post("/auth/callback", data=authority_answer(stack, client, upn)))


def post_callback(client, form):
    """Post form fields as the browser would; a lone surrogate goes out as the invalid UTF-8 byte it stands for."""
    pairs = form.items() if isinstance(form, dict) else form
    body = urlencode(list(pairs), encoding="utf-8", errors="surrogateescape")
    return through_the_hop(client, client.post("/auth/callback", data=body,
                                               content_type="application/x-www-form-urlencoded"))


def assert_sign_ins_work(stack, times: int = 3) -> None:
    for _ in range(times):
        answer = real_sign_in(stack)
        assert answer.status_code == 302 and answer.headers["Location"].endswith("/diagnosis"), answer.status_code


@pytest.mark.parametrize("value", POISON, ids=lambda v: repr(v[:12]))
def test_a_poisoned_error_does_not_stop_later_sign_ins(stack_clean, value):
    client = stack_clean.app.test_client()
    for _ in range(6):
        answer = post_callback(client, {"state": fresh_state(client), "error": value, "error_description": value})
        assert answer.status_code in (400, 413)  # 413: bigger than any form the portal takes, refused unread
    assert_sign_ins_work(stack_clean)


def fuzz_values(rng: random.Random) -> list[str]:
    """Hostile values: control characters, non-Latin-1, surrogates, huge, empty, and plausible-looking ones."""
    alphabet = string.printable + "\x00\x01\x1b\x7f\x85\u2028\u202e€ä\udcff漢"
    values = ["", " ", "\n", "a" * 9000, "é" * 5000, "access_denied\n" + FORGED]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300))) for _ in range(30)]
    return values


def test_fuzzed_callbacks_never_break_the_portal_or_later_sign_ins(stack_clean):
    rng = random.Random(8)  # fixed: a failure reproduces
    client = stack_clean.app.test_client()
    statuses = set()
    for value in fuzz_values(rng):
        field = rng.choice(["state", "code", "error", "error_description", "session_state", "client_info",
                            "error_uri"])
        form = {"state": fresh_state(client), "code": "x" * 20}
        form[field] = value
        statuses.add(post_callback(client, form).status_code)
    assert statuses <= {400}, statuses  # refused, never a 500
    assert_sign_ins_work(stack_clean)


def test_repeated_fields_are_refused(stack_clean):
    client = stack_clean.app.test_client()
    state = fresh_state(client)
    for form in ([("state", state), ("state", state), ("error", "access_denied")],
                 [("state", state), ("error", "access_denied"), ("error", "x\ny")],
                 [("state", state), ("code", "abc"), ("code", "def")]):
        assert post_callback(client, form).status_code == 400
    assert_sign_ins_work(stack_clean, times=1)


def test_a_good_answer_with_extra_fields_still_signs_in(stack_clean):
    client = stack_clean.app.test_client()
    fields = {**authority_answer(stack_clean, client), "unexpected": "x\ny€", "session_state": "s"}
    answer = through_the_hop(client, client.post("/auth/callback", data=fields))
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/diagnosis")


def test_a_forged_log_line_in_the_callback_stays_on_its_line(stack_clean, caplog):
    caplog.set_level(logging.INFO)
    client = stack_clean.app.test_client()
    for field in ("error", "error_description", "code", "state"):
        form = {"state": fresh_state(client), "error": "access_denied", field: "access_denied\n" + FORGED}
        post_callback(client, form)
    assert caplog.records, "the refusals were not logged"
    assert not any(line.startswith(FORGED) for line in caplog.text.splitlines())


@pytest.mark.parametrize("kind, seconds, expected_wait", [("429", 7, "7"), ("503", 0, "30")])
def test_a_busy_token_endpoint_gives_a_clear_page_for_that_student_only(stack_clean, kind, seconds, expected_wait):
    stack_clean.control("POST", "/faults", {"path": TOKEN_PATH, "kind": kind, "seconds": seconds, "count": 1,
                                            "method": "POST"})
    busy = real_sign_in(stack_clean)
    page = busy.get_data(as_text=True)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == expected_wait
    assert "busy" in page and "Traceback" not in page
    # MSAL's own throttling must not hold back the next student, nor this student's next try.
    assert real_sign_in(stack_clean, OTHER).status_code == 302
    assert_sign_ins_work(stack_clean, times=1)


def test_an_answer_brought_to_another_browser_signs_nobody_in(stack_clean):
    """Login CSRF: the attacker signs in as themself, then makes the victim's browser post the answer."""
    attacker, victim = stack_clean.app.test_client(), stack_clean.app.test_client()
    victim.environ_base["REMOTE_ADDR"] = "198.51.100.7"  # its own address: the fuzz above used up 127.0.0.1's audits
    fields = authority_answer(stack_clean, attacker, OTHER)
    landed = through_the_hop(victim, victim.post("/auth/callback", data=fields))
    assert landed.status_code == 400 and "started in another browser" in landed.get_data(as_text=True)
    assert victim.get_cookie(SESSION_COOKIE, domain=HOST) is None
    refused = stack_clean.services.store.audit_events(action="sign_in.refused", limit=1)
    assert refused and refused[0].actor_kind == "visitor" and refused[0].detail["refusal"] == "other_browser"
    assert refused[0].detail["client"] == "198.51.100.7"
    # The victim who started a sign-in of their own is not signed in as the attacker either.
    victim.get("/sign-in")
    landed = through_the_hop(victim, victim.post("/auth/callback", data=authority_answer(stack_clean, attacker, OTHER)))
    assert landed.status_code == 400
    assert victim.get_cookie(SESSION_COOKIE, domain=HOST) is None


def test_two_tabs_of_one_browser_can_both_finish(stack_clean):
    """A second tab's sign-in reuses the browser's binding instead of replacing the first tab's."""
    client = stack_clean.app.test_client()
    first, second = authority_answer(stack_clean, client), authority_answer(stack_clean, client)
    for fields in (first, second):  # the second lands on the diagnosis as well: the browser is signed in
        landed = through_the_hop(client, client.post("/auth/callback", data=fields))
        assert landed.status_code == 302 and landed.headers["Location"].endswith("/diagnosis")


def test_back_after_sign_in_lands_on_the_diagnosis(stack_clean):
    """Back re-posts the used answer: a browser that is signed in lands on its diagnosis, still signed in."""
    client = stack_clean.app.test_client()
    fields = authority_answer(stack_clean, client)
    assert through_the_hop(client, client.post("/auth/callback", data=fields)).status_code == 302
    # The cross-site POST carries none of the portal's cookies: it comes from a client with none here.
    again = stack_clean.app.test_client().post("/auth/callback", data=fields)
    assert "Set-Cookie" not in again.headers  # nothing may replace the browser's session cookie
    landed = through_the_hop(client, again)
    assert landed.status_code == 302 and landed.headers["Location"].endswith("/diagnosis")
    assert stack_clean.services.sessions.resolve(client.get_cookie(SESSION_COOKIE, domain=HOST).value).upn == STUDENT
