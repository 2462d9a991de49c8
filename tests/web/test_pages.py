"""The student's pages around the journey: time-out, language, device, signing out while unlocked, the desk."""
from __future__ import annotations

import dataclasses

import pytest

from app import create_app
from app.domain.reference import reference_code
from tests.web.conftest import SEED, csrf_of, demo_settings, sign_in

HALF = "ada.lovelace@uni.test"
PHONE = "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36"
COMPUTER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
DESK = dict(university_name="University of Test", desk_text="IT Service Desk, Library", desk_phone="+44 20 7946 0123",
            desk_url="https://servicedesk.uni.test", desk_hours="Mon-Fri 8-18")


def text_of(response) -> str:
    return response.get_data(as_text=True)


def unlocked(client):
    page = sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    return client.get("/guide")


def test_after_a_time_out_the_start_page_says_so_and_until_when_the_set_up_time_runs(client, clock):
    unlocked(client)
    clock.advance(21 * 60)  # nothing happened for longer than the 20-minute idle limit
    page = text_of(client.get("/guide", follow_redirects=True))
    assert "You were signed out because nothing happened here for 20 minutes." in page
    assert "Your set-up time still runs until" in page and "(in 9 minutes)" in page
    assert "signed out because" not in text_of(client.get("/"))  # said once: the dead token is dropped


def test_a_session_past_its_end_says_how_long_a_sign_in_lasts(client, clock):
    sign_in(client, HALF)
    for _ in range(4):  # active all along, but past the absolute end (60 minutes)
        clock.advance(15 * 60)
        client.get("/status")
    page = text_of(client.get("/", follow_redirects=True))
    assert "a sign-in here lasts at most 60 minutes" in page and "still runs" not in page


def test_signing_out_is_not_taken_for_a_time_out(client):
    page = sign_in(client, HALF)
    client.post("/sign-out", data={"csrf_token": csrf_of(page)})
    assert "signed out because" not in text_of(client.get("/"))


def test_the_language_switch_wins_over_the_browser_and_is_remembered(client):
    german = text_of(client.get("/?lang=de", headers={"Accept-Language": "en"}))
    assert '<html lang="de">' in german and 'hreflang="en"' in german
    assert '<html lang="de">' in text_of(client.get("/", headers={"Accept-Language": "en"}))
    client.delete_cookie("proofup_lang")
    assert '<html lang="en">' in text_of(client.get("/?lang=xx", headers={"Accept-Language": "en"}))
    assert client.get_cookie("proofup_lang") is None  # an unknown language is not saved


def test_the_language_links_never_lead_off_the_portal(client):
    page = text_of(client.get("//elsewhere.example/x"))
    assert "elsewhere.example" not in page and 'href="/?lang=de"' in page
    assert 'href="/sign-in?lang=de"' not in text_of(client.get("/"))  # the start page links to itself
    assert 'href="/?lang=de"' in text_of(client.get("/"))


def test_the_guide_fits_the_device_and_the_student_can_switch(client):
    unlocked(client)
    phone = text_of(client.get("/guide", headers={"User-Agent": PHONE}))
    assert 'data-device="phone"' in phone and "pair the app by clicking a link" in phone
    computer = text_of(client.get("/guide", headers={"User-Agent": COMPUTER}))
    assert 'data-device="computer"' in computer and "Scan QR code" in computer
    switched = text_of(client.get("/guide?device=computer", headers={"User-Agent": PHONE}))
    assert 'data-device="computer"' in switched
    assert 'data-device="computer"' in text_of(client.get("/guide?device=evil", headers={"User-Agent": PHONE}))


def test_the_status_says_when_the_time_ends_and_warns_near_the_end(client, clock):
    unlocked(client)
    poll = client.get("/status")
    assert "proofup_session=" not in " ".join(poll.headers.getlist("Set-Cookie"))  # a poll rewrites no cookie
    status = poll.get_json()
    assert "(in 30 minutes)" in status["ends"] and status["warning"] == ""
    clock.advance(13 * 60)
    client.get("/status")  # the page polls all along: the session stays open
    clock.advance(13 * 60)
    status = client.get("/status").get_json()
    assert "(in 4 minutes)" in status["ends"] and status["warning"].startswith("Only 4 minutes left")


def test_signing_out_while_unlocked_offers_to_end_the_set_up_time(client, services, directory):
    page = text_of(unlocked(client))
    assert 'href="/leave" id="sign-out"' in page  # not the direct sign-out form
    leave = client.get("/leave")
    assert "keeps running until" in text_of(leave)
    out = client.post("/leave", data={"csrf_token": csrf_of(leave)})
    assert out.headers["Location"].startswith("https://idp.test/adfs/oauth2/logout")
    assert services.store.grants_for(HALF)[0].end_reason == "cancelled"
    assert directory.list_members(SEED.bypass_group_dn) == []
    with client.session_transaction() as s:
        assert "upn" not in s


@pytest.fixture
def branded(tmp_path, services):
    logo = tmp_path / "logo.svg"
    logo.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>", encoding="utf-8")
    settings = demo_settings(tmp_path, logo_file=str(logo), **DESK)
    app = create_app(settings, services=dataclasses.replace(services, settings=settings))
    return app.test_client()


@pytest.mark.parametrize("upn", ["ken.thompson@uni.test", "dennis.ritchie@uni.test", "radia.perlman@uni.test",
                                 "margaret.hamilton@uni.test", "barbara.liskov@uni.test"])
def test_every_dead_end_names_the_university_the_desk_and_a_reference_code(branded, upn):
    html = text_of(sign_in(branded, upn))
    assert "University of Test" in html and 'href="tel:+442079460123"' in html
    assert 'id="help-heading"' in html and "https://servicedesk.uni.test" in html and "Mon-Fri 8-18" in html
    assert reference_code(upn, "test-secret-key-0123456789") in html


def test_the_logo_is_served_and_may_be_cached(branded, client):
    logo = branded.get("/logo")
    assert logo.status_code == 200 and logo.mimetype == "image/svg+xml"
    assert "no-store" not in logo.headers.get("Cache-Control", "")
    assert 'src="/logo"' in text_of(branded.get("/"))
    assert client.get("/logo").status_code == 404  # no logo configured
