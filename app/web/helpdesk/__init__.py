"""The service desk's console under /helpdesk: staff only (MFA), by role; one blueprint, pages by concern.

- access.py   who may enter: staff sessions with MFA, the role re-read from the directory, Origin checks
- views.py    now, look-up, a student's file and the actions on it, the audit trail and its export
- export.py   the audit trail as CSV, safe against formula injection
- invites.py  invite a student by mail, the invites by state, revoke, the mail that was not delivered

Later parts of the console (kiosk enrolment, batches) add their views to this blueprint and a tab to NAV.
"""
from __future__ import annotations

from flask import Blueprint
from flask_babel import lazy_gettext as _l

bp = Blueprint("helpdesk", __name__, url_prefix="/helpdesk")

# The console's tabs: (endpoint, label). A new part appends its own here when its module is imported.
NAV: list[tuple[str, object]] = [
    ("helpdesk.now", _l("Now")),
    ("helpdesk.look_up", _l("Look up a student")),
    ("helpdesk.audit", _l("Audit trail")),
]

from app.web.helpdesk import views  # noqa: E402,F401  (registers the views on bp)
from app.web.helpdesk import invites  # noqa: E402,F401  (the invites' views and tab)
from app.web.helpdesk import batches  # noqa: E402,F401  (weekly batches: their views and tab)
from app.web.helpdesk import scans  # noqa: E402,F401  (who will loop: the scans' views and tab)
from app.web.helpdesk import kiosks  # noqa: E402,F401  (kiosk enrolment: its views and tab)
