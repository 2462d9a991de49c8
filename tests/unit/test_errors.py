"""Every refusal is a Refused: one constructor carries the code, the message's values and the CLI's words."""
import pytest

from app.domain.batch_csv import CsvRejected
from app.domain.errors import Refused
from app.domain.invites import InviteError, InviteRefusal
from app.domain.kiosks import KioskError
from app.services.batches import BatchRefused
from app.services.helpdesk import StaffRefused
from app.services.invites import InviteRefused
from app.services.onboarding import NoOpenGrant, NotAllowed, TapRefused, UnlockRefused
from app.services.scan import ScanRefused

PLAIN = (InviteError, KioskError, BatchRefused, ScanRefused, StaffRefused, NotAllowed, CsvRejected, NoOpenGrant)
# These add typed facts of their own (the diagnosis, the other remedy, the token's hash) to the base's.
WITH_FACTS = (UnlockRefused, TapRefused, InviteRefused)


@pytest.mark.parametrize("kind", PLAIN)
def test_a_plain_refusal_has_the_base_constructor(kind):
    refused = kind("too_many", max=5)
    assert isinstance(refused, Refused) and kind.__init__ is Refused.__init__
    assert (refused.code, refused.params, str(refused)) == ("too_many", {"max": 5}, "too_many")


def test_the_message_speaks_for_the_cli_while_the_code_stays():
    refused = InviteError("no_mail", "no mail server is set up")
    assert (refused.code, str(refused), refused.params) == ("no_mail", "no mail server is set up", {})


@pytest.mark.parametrize("kind", WITH_FACTS)
def test_a_refusal_with_facts_is_still_one_the_base_catches(kind):
    assert issubclass(kind, Refused)


def test_an_invite_refusal_keeps_its_code_and_says_its_value():
    refused = InviteRefused(InviteRefusal.USED, "ab12")
    assert refused.code is InviteRefusal.USED and str(refused) == "used" and refused.link_hash == "ab12"


def test_no_open_grant_still_names_the_student():
    assert str(NoOpenGrant("no_open_grant", "ada@uni.test")) == "ada@uni.test"


class Trail:
    """An audit trail that keeps what it is told (the real one is tested against both databases)."""

    def __init__(self):
        self.events = []

    def audit(self, actor, action, upn=None, grant_id=None, outcome="ok", *, reason="", severity="info", **detail):
        self.events.append((action, upn, outcome, severity, detail))


def test_a_refusal_is_audited_before_it_is_raised_with_the_audits_detail_as_its_values():
    from app.domain.actors import Actor
    from app.services.refusals import audited

    trail, desk = Trail(), Actor.staff("hedy@uni.test", role="helpdesk", reason="t1")
    refused = audited(StaffRefused, trail, desk, "helpdesk.extend", "bad_minutes", upn="ada@uni.test",
                      client="10.0.0.1", minutes="9999", message="at most 480 minutes")
    assert (refused.code, str(refused), refused.params) == ("bad_minutes", "at most 480 minutes", {"minutes": "9999"})
    assert trail.events == [("helpdesk.extend", "ada@uni.test", "refused", "info",
                             {"refusal": "bad_minutes", "client": "10.0.0.1", "minutes": "9999",
                              "message": "at most 480 minutes"})]


def test_any_detail_name_reaches_the_audit_and_the_refusal():
    from app.domain.actors import Actor
    from app.services.refusals import audited

    trail, desk = Trail(), Actor.staff("hedy@uni.test", role="helpdesk", reason="t1")
    refused = audited(ScanRefused, trail, desk, "scan.start", "no_source", kind="group", refusal_of="x")
    assert refused.params == {"kind": "group", "refusal_of": "x"}
    assert trail.events[0][4] == {"refusal": "no_source", "client": "", "kind": "group", "refusal_of": "x"}
