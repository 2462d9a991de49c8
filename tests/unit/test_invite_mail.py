"""The invite mail in each language: the link in both parts, its end, the university and the desk's contact."""
from __future__ import annotations

import pytest

from app.adapters.mail_templates import MailTemplates

LINK = "https://proofup.uni.test/invite/" + "A" * 43
PARAMS = {"name": "Ada", "upn": "ada@uni.test", "invite_id": 1, "days": 7, "link": LINK,
          "expires": "2026-12-07T09:00:00+00:00", "desk": "IT Service Desk, +49 30 1234",
          "university": "Hochschule Musterstadt"}


@pytest.mark.parametrize("language, words", [
    ("en", ("Set up a sign-in method", "works once", "Questions?")),
    ("de", ("Richten Sie eine Anmeldemethode", "funktioniert einmal", "Fragen?")),
])
def test_the_invite_names_the_link_its_end_the_university_and_the_desk(language, words):
    mail = MailTemplates(timezone="Europe/Berlin").render("invite", language, PARAMS)
    subject_word, rule_word, help_word = words
    assert mail.subject.startswith(subject_word)
    for body in (mail.text, mail.html):
        assert LINK in body and rule_word in body and help_word in body
        assert "Hochschule Musterstadt" in body and "IT Service Desk, +49 30 1234" in body
        assert "ada@uni.test" in body and "2026" in body
    assert f'<a href="{LINK}">' in mail.html


def test_without_a_desk_the_mail_still_says_who_helps():
    mail = MailTemplates().render("invite", "en", {**PARAMS, "desk": "", "university": ""})
    assert "Your university's IT service desk helps." in mail.text and LINK in mail.text
