"""The security notices end to end in the demo: a student unlocks and registers; both notices reach the mailbox."""
from __future__ import annotations

import re

from app.demo import DemoStack, adfs_form_post
from tests.web.conftest import check_until_done, csrf_of

ADA = "ada.lovelace@uni.test"
LINK = re.compile(r"https?:|www\.|<a[\s>]|href=", re.IGNORECASE)


def test_a_students_unlock_and_new_method_reach_the_demo_mailbox_in_their_language_with_no_link(tmp_path):
    stack = DemoStack(tmp_path, method_delay_seconds=0.0, check_interval_seconds=1.0, worker_interval_seconds=1.0,
                      confirm_interval_seconds=0.5).start()
    try:
        assert stack.settings.smtp_security == "none" and stack.settings.smtp_host == "127.0.0.1"
        client = stack.app.test_client()
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de-DE,de;q=0.9"
        posted = adfs_form_post(client.get("/sign-in").headers["Location"], ADA, stack.seed.user(ADA).password,
                                stack.settings.ca_bundle)
        page = client.post("/auth/callback", data=posted.fields, follow_redirects=True)
        token = csrf_of(page)
        assert client.post("/unlock", data={"csrf_token": token}).headers["Location"].endswith("/guide")
        (unlocked,) = stack.mailbox.wait_for(1)
        stack.register_method(ADA, "microsoftAuthenticator")
        assert check_until_done(client, token, seconds=20)["phase"] == "done"
        unlocked, added = stack.mailbox.wait_for(2)
        assert unlocked["To"] == ADA and added["To"] == ADA and unlocked["From"] == "proofup@uni.test"
        assert unlocked["Subject"] == "Ihr Konto wurde freigeschaltet, um eine Anmeldemethode einzurichten"
        assert added["Subject"] == "Ihrem Konto wurde eine neue Anmeldemethode hinzugefügt"
        for message in (unlocked, added):
            text = message.get_body(("plain",)).get_content()
            html = message.get_body(("html",)).get_content()
            assert "Wenn Sie das nicht waren" in text and "Wenn Sie das nicht waren" in html
            assert not LINK.search(text) and not LINK.search(html), "a security notice must carry no link"
        saved = sorted(p.name for p in (tmp_path / "mailbox").glob("*.eml"))
        assert saved == [f"0001-{ADA}.eml", f"0002-{ADA}.eml"]
        assert str((tmp_path / "mailbox").resolve()) in stack.banner()
        assert len(stack.services.outbox.mails_for(ADA)) == 2  # one notice each, nothing sent twice
    finally:
        stack.stop()


def test_an_invite_link_is_one_click_away_on_the_demos_mailbox_page(tmp_path):
    """The desk invites; the demo's worker sends it; the mailbox page lists it with the link as a link."""
    from html.parser import HTMLParser

    import requests

    from app.domain.actors import Actor

    stack = DemoStack(tmp_path, worker_interval_seconds=1.0, confirm_interval_seconds=0.5).start()
    try:
        assert stack.mailbox_url and stack.mailbox_url in stack.banner()
        stack.services.invites.invite(ADA, Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="t-2"))
        (invite,) = stack.mailbox.wait_for(1)
        listing = requests.get(stack.mailbox_url, timeout=5).text
        assert invite["Subject"] in listing and ADA in listing

        class Links(HTMLParser):
            found: list[str] = []

            def handle_starttag(self, tag, attrs):
                if tag == "a":
                    self.found.append(dict(attrs)["href"])

        shown = requests.get(stack.mailbox_url + "1", timeout=5).text
        parser = Links()
        parser.feed(shown)
        (link,) = [href for href in parser.found if "/invite/" in href]
        assert link.startswith(stack.portal_url) and requests.get(link, timeout=5).status_code == 200
        assert requests.get(stack.mailbox_url + "99", timeout=5).status_code == 404
    finally:
        stack.stop()
